package control

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// DefaultLockPath is the file every harness on the machine locks before it
// touches network namespaces. It sits in /run, next to /run/netns where
// `ip netns` keeps the namespaces it guards, and is a fixed path rather
// than one under os.TempDir so that two harnesses with different TMPDIRs
// still see each other.
const DefaultLockPath = "/run/raftq-jepsen.lock"

// ErrHarnessRunning is returned (wrapped, with the lock file and the
// holder's pid) when another live harness holds the lock.
var ErrHarnessRunning = errors.New("another jepsen harness is running")

// HarnessLock is the machine-wide lock a harness holds for as long as its
// namespaces exist. It is an flock, not the pid file's existence: the
// kernel drops an flock when its holder dies, so a SIGKILLed harness never
// leaves a lock that blocks the next run. The pid written into the file is
// only there to name the holder in the refusal.
type HarnessLock struct {
	path string
	f    *os.File
}

// AcquireLock takes the lock at path (DefaultLockPath if empty) without
// waiting and writes this process's pid into it. If another process holds
// it, the error wraps ErrHarnessRunning and names the file and that pid:
// a second harness must refuse to start rather than queue behind the first,
// since its setup would delete the first one's namespaces.
func AcquireLock(path string) (*HarnessLock, error) {
	if path == "" {
		path = DefaultLockPath
	}
	// os.OpenFile sets O_CLOEXEC, so brokerd, svcd and the ip commands the
	// harness starts do not inherit the descriptor: the lock goes with the
	// harness, not with a child that outlives it.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("jepsen lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by pid %s; wait for that run to end or stop it (a dead holder's lock is released by the kernel)", ErrHarnessRunning, path, holder)
		}
		return nil, fmt.Errorf("jepsen lock %s: %w", path, err)
	}
	// The file is kept, never removed: unlinking it would let a third
	// harness lock a new inode while a second still waits on the old one.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("jepsen lock %s: write pid: %w", path, err)
	}
	return &HarnessLock{path: path, f: f}, nil
}

// readHolder reads the pid the holder wrote, or says it is not known (the
// holder may be between truncating and writing it).
func readHolder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	if pid := strings.TrimSpace(string(b[:n])); pid != "" {
		return pid
	}
	return "(unknown)"
}

// Path is the lock file.
func (l *HarnessLock) Path() string { return l.path }

// Release empties the pid and drops the lock. Safe to call more than once
// and on nil.
func (l *HarnessLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	// Clear the pid first, so a refusal never names a process that has
	// already let go.
	_ = l.f.Truncate(0)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
