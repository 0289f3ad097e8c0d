package main

import (
	"testing"

	"github.com/raftq/raftq/brokerd/daemon"
)

// A brokerd started without the harness's environment runs with no test
// hooks at all (in the production build testHooks is empty; in the jepsen
// build it needs RAFTQ_JEPSEN_CONTROL or RAFTQ_JEPSEN_BUG).
func TestProductionConfigHasNoTestHooks(t *testing.T) {
	t.Setenv("RAFTQ_JEPSEN_CONTROL", "")
	t.Setenv("RAFTQ_JEPSEN_BUG", "")
	cfg := daemon.DefaultConfig()
	if cfg.Testing != nil {
		t.Fatal("DefaultConfig has test hooks")
	}
	testHooks(&cfg.Config)
	if cfg.Testing != nil {
		t.Fatalf("testHooks without the harness's environment set hooks: %+v", cfg.Testing)
	}
}
