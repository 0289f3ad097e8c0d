package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestVersionFlag builds brokerd the way the Makefile does (-ldflags -X on
// internal/version) and runs `brokerd --version`: the stamp reaches the
// output, and nothing else is needed (no id, no data dir).
func TestVersionFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds brokerd")
	}
	bin := filepath.Join(t.TempDir(), "brokerd")
	const pkg = "github.com/raftq/raftq/internal/version"
	out, err := exec.Command("go", "build", "-ldflags", "-X "+pkg+".Version=v9.8.7-test -X "+pkg+".Commit=abc123", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "--version").CombinedOutput()
	want := "brokerd v9.8.7-test (commit abc123, " + runtime.Version() + ")"
	if err != nil || strings.TrimSpace(string(out)) != want {
		t.Fatalf("brokerd --version: %q %v, want %q", out, err, want)
	}
}
