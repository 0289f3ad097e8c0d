package main

import (
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/testutil"
)

// TestVersionFlag runs workerd's main with --version: one line naming
// workerd, the commit and the Go version, and exit 0 without any
// configuration or broker.
func TestVersionFlag(t *testing.T) {
	out, err := testutil.Child("workerd", "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "workerd ") || !strings.Contains(string(out), "(commit ") || !strings.Contains(string(out), "go1.") {
		t.Fatalf("workerd --version: %q %v", out, err)
	}
}
