//go:build jepsen && jepsenbug

package main

import (
	"fmt"
	"os"

	"github.com/raftq/raftq/internal/seededbug"
)

// seededBugs returns the seeded bugs RAFTQ_JEPSEN_BUG names
// (internal/seededbug), nil for none. An unknown name stops the process:
// a seeded-bug run that silently runs no bug would pass for the wrong
// reason.
func seededBugs(list string) *bugSet {
	b := &bugSet{}
	ics, err := seededbug.Interceptors(list, b.fsm.Load)
	if err != nil {
		fmt.Fprintln(os.Stderr, "brokerd:", err)
		os.Exit(2)
	}
	b.moveLeft = seededbug.HooksFor(list).MoveLeft
	if len(ics) == 0 && b.moveLeft == nil {
		return nil
	}
	b.interceptors = ics
	return b
}
