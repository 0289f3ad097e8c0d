package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// When set, the test binary runs svcd's main instead of the tests: the
// cheapest way to get a real svcd process without building another binary.
const childEnv = "SVCD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Args = append([]string{"svcd"}, strings.Fields(os.Getenv("SVCD_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSIGTERM runs svcd as a process, waits until it is ready, sends
// SIGTERM and expects a clean exit after an orderly shutdown.
func TestSIGTERM(t *testing.T) {
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	dataDir := filepath.Join(t.TempDir(), "svcd")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// A broker that is nowhere: svcd starts (it dials lazily) and
	// verifies results with it.
	cmd.Env = append(os.Environ(), childEnv+"=1",
		"SVCD_TEST_ARGS=--listen-grpc "+grpcAddr+" --listen-http "+httpAddr+" --data-dir "+dataDir+" --brokers "+freeAddr(t))
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
