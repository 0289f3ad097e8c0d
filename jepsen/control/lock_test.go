package control

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHarnessLockExcludesSecondHarness: while one harness holds the lock a
// second acquisition fails at once with ErrHarnessRunning naming the file
// and the holder's pid; after release a third one gets it.
func TestHarnessLockExcludesSecondHarness(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raftq-jepsen.lock")
	first, err := AcquireLock(path)
	if err != nil {
		t.Fatalf("first acquisition: %v", err)
	}
	_, err = AcquireLock(path)
	if !errors.Is(err, ErrHarnessRunning) {
		t.Fatalf("second acquisition while held: got %v, want ErrHarnessRunning", err)
	}
	if pid := strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "pid "+pid) {
		t.Fatalf("refusal %q does not name the lock %s and its holder pid %s", err, path, pid)
	}
	first.Release()
	first.Release() // idempotent
	third, err := AcquireLock(path)
	if err != nil {
		t.Fatalf("acquisition after release: %v", err)
	}
	third.Release()
}

// TestSetupNetworkRefusedWhileLocked: SetupNetwork, the path every run
// takes to the namespaces (New calls it), refuses while another harness
// holds the lock, and does so before running any command. PATH is emptied
// so that, were the lock not taken, its ip commands fail harmlessly here
// (this test runs as root on harness machines) instead of deleting a live
// run's namespaces.
func TestSetupNetworkRefusedWhileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raftq-jepsen.lock")
	held, err := AcquireLock(path)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	t.Setenv("PATH", t.TempDir())
	nw, err := SetupNetwork("rqjlocktest", "198.18.251", 1, path)
	if nw != nil {
		t.Fatal("SetupNetwork built a network while another harness held the lock")
	}
	if !errors.Is(err, ErrHarnessRunning) {
		t.Fatalf("SetupNetwork while locked: got %v, want ErrHarnessRunning", err)
	}
}

// TestHarnessLockFreedWhenHolderKilled: a harness killed with SIGKILL
// cannot release anything, yet the next run must not be blocked; the
// kernel drops the flock with the process. The holder is a child (this
// test binary re-run), so the refusal must name its pid, not ours.
func TestHarnessLockFreedWhenHolderKilled(t *testing.T) {
	if p := os.Getenv("RAFTQ_TEST_LOCK_HOLDER"); p != "" {
		if _, err := AcquireLock(p); err != nil {
			os.Exit(3)
		}
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "raftq-jepsen.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHarnessLockFreedWhenHolderKilled$")
	cmd.Env = append(os.Environ(), "RAFTQ_TEST_LOCK_HOLDER="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pid := strconv.Itoa(cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.TrimSpace(string(b)) == pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("holder never wrote its pid %s into %s (file: %q)", pid, path, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := AcquireLock(path); !errors.Is(err, ErrHarnessRunning) || !strings.Contains(err.Error(), "pid "+pid) {
		t.Fatalf("while the child holds the lock: got %v, want ErrHarnessRunning naming pid %s", err, pid)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	l, err := AcquireLock(path)
	if err != nil {
		t.Fatalf("lock of a killed holder still blocks: %v", err)
	}
	l.Release()
}
