// Package scripts holds the shell scripts behind make run, make bench and
// CI; its tests run them for real.
package scripts

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/testutil"
)

// lines collects a process's output and lets a test wait for a line.
type lines struct{ testutil.Buffer }

// waitFor waits until the output has a line containing every one of want,
// after the first `after` bytes; it returns the offset past that line.
func (l *lines) waitFor(t *testing.T, after int, timeout time.Duration, want ...string) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s := l.String()
		if after <= len(s) {
			off := after
			sc := bufio.NewScanner(strings.NewReader(s[after:]))
			for sc.Scan() {
				line := sc.Text()
				off += len(line) + 1
				ok := true
				for _, w := range want {
					ok = ok && strings.Contains(line, w)
				}
				if ok {
					return off
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no line with %q within %s; output:\n%s", want, timeout, l.String())
	return 0
}

func runScript(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("./run-cluster.sh", args...)
	cmd.Dir = "."
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run-cluster.sh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// make run's cluster, for real (brokerd, etcd, svcd, workerd processes):
// it says when a node is SIGKILLed (with the signal and how to restart
// it), `run-cluster.sh restart` from another shell brings the node back
// from its data dir and the supervisor says so, and SIGTERM (Ctrl-C)
// stops every process, the restarted node included.
func TestMakeRunReportsAndRestartsNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the whole make run cluster")
	}
	for _, port := range []string{"7101", "7201", "7379", "7400"} {
		if l, err := net.Listen("tcp", "127.0.0.1:"+port); err != nil {
			t.Skipf("port %s is in use (make run running here?): %v", port, err)
		} else {
			l.Close()
		}
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../cmd/brokerd", "../cmd/brokerctl", "../cmd/raftq-etcd", "../cmd/svcd", "../cmd/workerd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	env := append(os.Environ(), "RAFTQ_RUN_BIN="+bin, "RAFTQ_RUN_DIR="+dir, "RAFTQ_ETCD_ENDPOINTS=", "RAFTQ_TLS=0")
	cmd := exec.Command("./run-cluster.sh")
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lines{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// Whatever happened, leave no process behind.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for _, n := range []string{"n1", "n2", "n3"} {
			if b, err := os.ReadFile(filepath.Join(dir, n+".pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	off := out.waitFor(t, 0, 90*time.Second, "Ctrl-C stops the cluster")
	off = out.waitFor(t, off, 30*time.Second, "127.0.0.1:7102", "n2")

	if got := runScript(t, env, "kill", "2"); !strings.Contains(got, "n2 (pid") {
		t.Fatalf("kill said %q", got)
	}
	off = out.waitFor(t, off, 15*time.Second, "n2 (pid", "exited with status 137 (signal 9)")
	off = out.waitFor(t, off, 5*time.Second, "scripts/run-cluster.sh restart 2")
	if strings.Contains(out.String(), "Killed") {
		t.Fatalf("bash's job notice leaked into the output:\n%s", out.String())
	}
	// Refusals: a running node cannot be restarted, a down one not killed.
	for _, args := range [][]string{{"kill", "2"}, {"restart", "1"}, {"restart", "7"}} {
		c := exec.Command("./run-cluster.sh", args...)
		c.Env = env
		if b, err := c.CombinedOutput(); err == nil {
			t.Fatalf("run-cluster.sh %v succeeded: %s", args, b)
		}
	}
	if got := runScript(t, env, "restart", "2"); !strings.Contains(got, "n2 started again") {
		t.Fatalf("restart said %q", got)
	}
	off = out.waitFor(t, off, 15*time.Second, "n2 is running again")
	// The restarted node serves again and is a member.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		st := exec.CommandContext(ctx, filepath.Join(bin, "brokerctl"), "--brokers", "127.0.0.1:7102", "--timeout", "2s", "stats")
		if err := st.Run(); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("restarted n2 does not serve")
		}
		time.Sleep(300 * time.Millisecond)
	}
	// A node killed after a restart is not the script's child: reported
	// without a status.
	runScript(t, env, "kill", "2")
	off = out.waitFor(t, off, 15*time.Second, "n2 (pid", "exited; log:")
	runScript(t, env, "restart", "2")
	out.waitFor(t, off, 15*time.Second, "n2 is running again")

	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("make run did not stop on SIGTERM:\n%s", out.String())
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if _, err := os.Stat(filepath.Join(dir, n+".pid")); err == nil {
			t.Errorf("%s.pid left behind", n)
		}
	}
	// Every process is gone: the ports are free again.
	for _, port := range []string{"7101", "7102", "7103", "7379", "7400"} {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			t.Errorf("port %s still served after stop", port)
		}
	}
}
