package workerd_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// buildWorkerd compiles cmd/workerd into dir.
func buildWorkerd(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "workerd")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/raftq/raftq/cmd/workerd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/workerd: %v\n%s", err, out)
	}
	return bin
}

// proc is a workerd child process whose JSON log lines are parsed.
type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
	done  chan struct{}
}

func startWorkerd(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			var m map[string]any
			d := json.NewDecoder(bytes.NewReader(line))
			d.UseNumber()
			p.mu.Lock()
			p.raw.Write(line)
			p.raw.WriteByte('\n')
			if d.Decode(&m) == nil {
				p.lines = append(p.lines, m)
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("workerd %v log:\n%s", args, p.raw.String())
			p.mu.Unlock()
		}
	})
	return p
}

// started waits for the "job started" line of job id and returns its lease
// token.
func (p *proc) started(t *testing.T, id string) uint64 {
	t.Helper()
	var token uint64
	testutil.WaitFor(t, 60*time.Second, "workerd to log the start of "+id, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, m := range p.lines {
			if m["msg"] == "job started" && m["job_id"] == id {
				n, err := m["lease_token"].(json.Number).Int64()
				if err != nil {
					t.Fatalf("lease_token in %v: %v", m, err)
				}
				token = uint64(n)
				return true
			}
		}
		return false
	})
	return token
}

// A workerd process killed with SIGKILL mid-job loses the job to another
// worker once the lease expires; the dead worker's late ack, replayed with
// its old lease token, is refused with STALE_TOKEN.
func TestKilledWorkerdLosesJob(t *testing.T) {
	bin := buildWorkerd(t, t.TempDir())
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 2*time.Minute)
	brokers := strings.Join(c.Addrs(), ",")
	id, _, err := cl.EnqueueOne(ctx, "kill", "sleep", []byte("3s"), client.WithLeaseDuration(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}

	doomed := startWorkerd(t, bin, "--brokers", brokers, "--queues", "kill:1", "--worker-id", "doomed", "--poll-wait", "2s")
	oldToken := doomed.started(t, id)
	if err := doomed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = doomed.cmd.Wait()
	if ws, ok := doomed.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("doomed workerd ended with %v, want SIGKILL", doomed.cmd.ProcessState)
	}
	j, err := cl.GetJob(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after SIGKILL: job %s is %v, leased by %q with token %d (the dead worker's token %d)", id, j.State, j.LeasedBy, j.LeaseToken, oldToken)

	rescuer := startWorkerd(t, bin, "--brokers", brokers, "--queues", "kill:1", "--worker-id", "rescuer", "--poll-wait", "2s")
	newToken := rescuer.started(t, id)
	if newToken <= oldToken {
		t.Fatalf("rescuer's token %d is not newer than the dead worker's %d", newToken, oldToken)
	}
	// The late ack while the rescuer holds the job...
	err = cl.Ack(ctx, id, oldToken)
	if client.Reason(err) != raftqv1.ErrorDetail_STALE_TOKEN || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("late ack with the old token while the job is re-leased: %v, want FailedPrecondition STALE_TOKEN", err)
	}
	j = testcluster.WaitJobState(t, cl, id, raftqv1.JobState_JOB_STATE_SUCCEEDED)
	if j.Attempts != 2 || j.LeasedBy != "rescuer" || j.LeaseToken != newToken {
		t.Fatalf("job after the rescue: attempts %d leased_by %q token %d", j.Attempts, j.LeasedBy, j.LeaseToken)
	}
	// ...and after it succeeded.
	err = cl.Ack(ctx, id, oldToken)
	if client.Reason(err) != raftqv1.ErrorDetail_STALE_TOKEN {
		t.Fatalf("late ack with the old token after success: %v, want STALE_TOKEN", err)
	}

	// SIGTERM is a graceful shutdown: exit status 0.
	if err := rescuer.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := rescuer.cmd.Wait(); err != nil {
		t.Fatalf("rescuer after SIGTERM: %v", err)
	}
	<-rescuer.done
}

// SIGTERM while jobs run longer than --shutdown-timeout: the process exits
// 0 and leaves nothing leased; the unfinished jobs are back to ready.
func TestWorkerdSIGTERMLeavesNothingLeased(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildWorkerd(t, t.TempDir())
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 2*time.Minute)
	var ids []string
	for i := 0; i < 4; i++ {
		id, _, err := cl.EnqueueOne(ctx, "term", "sleep", []byte("1m"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	p := startWorkerd(t, bin, "--brokers", strings.Join(c.Addrs(), ","), "--queues", "term:4", "--shutdown-timeout", "200ms")
	for _, id := range ids {
		p.started(t, id)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("workerd after SIGTERM: %v", err)
	}
	st, err := cl.QueueStats(ctx, "term")
	if err != nil {
		t.Fatal(err)
	}
	if s := st[0]; s.Leased != 0 || s.Ready != 4 {
		t.Fatalf("after SIGTERM: %+v; want 4 ready, none leased", s)
	}
}
