// Package testutil holds the small helpers tests of many packages share
// (dependency checks, loggers that write through t.Log, waiting for a
// condition), so each package does not keep its own copy. Helpers that
// start real servers live with those servers' test packages
// (internal/testcluster, internal/etcdtest, svcd/svcdtest).
package testutil

import (
	"os/exec"
	"strings"
	"testing"
)

// LinksNone fails t when `go list -deps` of any of pkgs names a package
// in banned: "p/..." bans p and every package below it, "p" bans p alone.
// It is how a test asserts that a package links no server code (the SDK,
// brokerctl) or that a library links none of what its process wires
// around it. It skips without a go command.
func LinksNone(t testing.TB, pkgs, banned []string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < len(pkgs)+5 {
		// A listing this short means go list answered something else
		// (an empty module, a wrong path) and the check would pass vacuously.
		t.Fatalf("go list -deps %s listed %d packages: %q", strings.Join(pkgs, " "), len(deps), out)
	}
	for _, d := range deps {
		for _, bad := range banned {
			p, tree := strings.CutSuffix(bad, "/...")
			if d == p || (tree && strings.HasPrefix(d, p+"/")) {
				t.Errorf("%s links %s", strings.Join(pkgs, ", "), d)
			}
		}
	}
}
