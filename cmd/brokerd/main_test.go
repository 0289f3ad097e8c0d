package main_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// buildBrokerd compiles this command once per test binary run.
func buildBrokerd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "brokerd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build brokerd: %v\n%s", err, out)
	}
	return bin
}

type proc struct {
	id, grpc, raft, dir string
	args                []string
	cmd                 *exec.Cmd
	done                chan error
}

func (p *proc) start(t *testing.T, bin string) {
	t.Helper()
	p.cmd = exec.Command(bin, p.args...)
	log, err := os.OpenFile(filepath.Join(p.dir+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait(); log.Close() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
}

// realProcesses skips the test in -short mode; otherwise it builds brokerd
// and gives a directory for the nodes' data dirs and logs.
func realProcesses(t *testing.T) (bin, dir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs real processes")
	}
	return buildBrokerd(t), t.TempDir()
}

// newProc is a node slot n<i> with its own ports and data dir below dir.
func newProc(t *testing.T, dir string, i int) *proc {
	id := fmt.Sprintf("n%d", i)
	return &proc{id: id, grpc: freeport.T(t), raft: freeport.T(t), dir: filepath.Join(dir, id)}
}

// startCluster starts n nodes n1..n<n> that bootstrap one cluster, and
// returns them with their gRPC addresses.
func startCluster(t *testing.T, bin, dir string, n int, extra ...string) ([]*proc, []string) {
	var procs []*proc
	var peers, addrs []string
	for i := 1; i <= n; i++ {
		p := newProc(t, dir, i)
		procs = append(procs, p)
		peers = append(peers, p.id+"="+p.raft)
	}
	for _, p := range procs {
		p.args = []string{"--id", p.id, "--data-dir", p.dir, "--grpc-addr", p.grpc, "--raft-addr", p.raft,
			"--bootstrap-expect", fmt.Sprint(n), "--peers", strings.Join(peers, ","), "--log-level", "info"}
		p.args = append(p.args, extra...)
		p.start(t, bin)
		addrs = append(addrs, p.grpc)
	}
	return procs, addrs
}

// Real processes: a SIGTERMed leader hands over leadership and exits 0; a
// SIGKILLed node restarts from its data dir without bootstrapping again;
// nothing acknowledged is lost along the way. With one Raft group and
// with three (every group's leader, replicas and data files alike).
func TestRealProcessesSigtermSigkillRestart(t *testing.T) {
	bin, _ := realProcesses(t)
	for _, groups := range []int{1, 3} {
		t.Run(fmt.Sprintf("groups=%d", groups), func(t *testing.T) { realProcessesRestart(t, bin, t.TempDir(), groups) })
	}
}

func realProcessesRestart(t *testing.T, bin, dir string, groups int) {
	procs, addrs := startCluster(t, bin, dir, 3, "--groups", fmt.Sprint(groups))
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var ids []string
	enqueue := func(n int) {
		for i := 0; i < n; i++ {
			// Queues q0, q1, ...: with groups, spread over them.
			res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: fmt.Sprintf("q%d", i%6), Type: "t", Payload: []byte{byte(i)}})
			if err != nil {
				t.Fatalf("enqueue: %v", err)
			}
			ids = append(ids, res[0].JobId)
		}
	}
	enqueue(20)
	leader := func() *proc {
		for _, p := range procs {
			st, err := cl.Status(ctx, p.grpc)
			if err == nil && st.State == "Leader" {
				return p
			}
		}
		return nil
	}
	var l *proc
	for l == nil {
		l = leader()
		time.Sleep(50 * time.Millisecond)
	}
	// SIGTERM the leader: it must exit cleanly (status 0) after handing over.
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-l.done:
		if err != nil {
			t.Fatalf("leader exit after SIGTERM: %v (log %s.log)", err, l.dir)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("leader did not exit after SIGTERM")
	}
	enqueue(20) // the survivors elect a leader and keep accepting writes

	// SIGKILL another node, then restart both from disk.
	var victim *proc
	for _, p := range procs {
		if p != l {
			victim = p
			break
		}
	}
	_ = victim.cmd.Process.Kill()
	<-victim.done
	for _, p := range []*proc{l, victim} {
		p.start(t, bin)
	}
	enqueue(20)
	for _, id := range ids {
		if _, err := cl.GetJob(ctx, id, 0); err != nil {
			t.Fatalf("job %s lost: %v", id, err)
		}
	}
	// Restarted nodes said they restarted from disk, never bootstrapped twice.
	for _, p := range []*proc{l, victim} {
		b, _ := os.ReadFile(p.dir + ".log")
		if strings.Count(string(b), "bootstrapped new cluster") != groups || strings.Count(string(b), "restarting from existing raft state") != groups {
			t.Fatalf("%s log does not show one bootstrap then a restart from disk for each of %d groups:\n%s", p.id, groups, b)
		}
	}
	// Every node converges on the same state, in every group.
	for g := 0; g < groups; g++ {
		gctx := ctx
		if groups > 1 {
			gctx = metadata.AppendToOutgoingContext(ctx, placement.Header, fmt.Sprint(g))
		}
		waitConverged(t, gctx, cl, procs)
	}
	// Every data file and dir is brokerd's user's only, whatever the
	// umask it was started with (this test's is usually 022).
	for _, p := range procs {
		if fi, err := os.Stat(filepath.Join(p.dir, "raft-wal", "wal-meta.db")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s raft-wal/wal-meta.db: %v %v", p.id, fi, err)
		}
		err := filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if want := os.FileMode(0o600); d.IsDir() && fi.Mode().Perm() != 0o700 || !d.IsDir() && fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v", path, fi.Mode().Perm())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
