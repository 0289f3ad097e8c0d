package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/testutil"
)

// TestMain runs svcd's main instead of the tests in a process that
// testutil.Child started: a real svcd process without another binary.
func TestMain(m *testing.M) {
	testutil.RunChild("svcd", main)
	os.Exit(m.Run())
}

// TestSIGTERM runs svcd as a process, waits until it is ready, sends
// SIGTERM and expects a clean exit after an orderly shutdown.
func TestSIGTERM(t *testing.T) {
	grpcAddr, httpAddr := freeport.T(t), freeport.T(t)
	dataDir := filepath.Join(t.TempDir(), "svcd")
	// A broker that is nowhere: svcd starts (it dials lazily) and
	// verifies results with it.
	cmd := testutil.Child("svcd", "--listen-grpc", grpcAddr, "--listen-http", httpAddr, "--data-dir", dataDir, "--brokers", freeport.T(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	ready := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !ready; {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			ready = resp.StatusCode == 200
			resp.Body.Close()
		}
		if !ready {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !ready {
		cmd.Process.Kill()
		t.Fatalf("svcd never became ready; stderr:\n%s", stderr.String())
	}
	// The database, its WAL and shared memory are svcd's user's only,
	// whatever the umask of whoever started it.
	wantMode(t, dataDir, 0o700)
	for _, f := range []string{"svcd.db", "svcd.db-wal", "svcd.db-shm"} {
		wantMode(t, filepath.Join(dataDir, f), 0o600)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("svcd did not exit after SIGTERM; stderr:\n%s", stderr.String())
	}
	for _, want := range []string{"svcd serving", "shutting down", "shutdown complete"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

// wantMode fails unless path exists with exactly mode's permission bits.
func wantMode(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"--db", "oracle"}, {"--log-level", "loud"}, {"extra"}, {"--nope"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, append(args, "--data-dir", t.TempDir(), "--listen-grpc", "127.0.0.1:0", "--listen-http", "127.0.0.1:0"))
		cancel()
		if err == nil {
			t.Errorf("svcd %v: no error", args)
		}
	}
}
