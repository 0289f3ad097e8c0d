//go:build !jepsen

package main

import "github.com/raftq/raftq/brokerd"

// testHooks is the jepsen build's (testhooks_jepsen.go); a production
// build leaves brokerd.Config.Testing nil.
func testHooks(*brokerd.Config) {}
