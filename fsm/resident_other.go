//go:build !linux

package fsm

import "go.etcd.io/bbolt"

// dropResident is a no-op where madvise is not wired up (see
// resident_linux.go).
func dropResident(*bbolt.Tx, int64) {}
