package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestVersionFlag runs workerd's main with --version: one line naming
// workerd, the commit and the Go version, and exit 0 without any
// configuration or broker.
func TestVersionFlag(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "WORKERD_TEST_ARGS=--version")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "workerd ") || !strings.Contains(string(out), "(commit ") || !strings.Contains(string(out), "go1.") {
		t.Fatalf("workerd --version: %q %v", out, err)
	}
}
