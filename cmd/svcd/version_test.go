package main

import (
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/testutil"
)

// TestVersionFlag runs svcd's main with --version: one line naming svcd,
// the commit and the Go version, and exit 0 without any configuration.
func TestVersionFlag(t *testing.T) {
	out, err := testutil.Child("svcd", "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "svcd ") || !strings.Contains(string(out), "(commit ") || !strings.Contains(string(out), "go1.") {
		t.Fatalf("svcd --version: %q %v", out, err)
	}
}
