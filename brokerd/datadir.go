package brokerd

import (
	"fmt"
	"os"
	"path/filepath"
)

// privateDataDir creates the data dir and its snapshots dir readable by
// brokerd's user only (0700) and tightens existing ones: the Raft log
// (raft.db, which bbolt creates 0600), the snapshots and the FSM hold
// every job's payload, not for other local users. Files inside that
// Raft's snapshot store creates follow the process umask; cmd/brokerd
// sets 077.
func privateDataDir(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "snapshots")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	return nil
}
