package brokerd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// Log store kinds (Config.LogStore, `raft.log_store`).
const (
	// LogStoreAuto keeps whatever log a data dir already holds (raft.db:
	// bolt; raft-wal/: wal) and makes a new data dir's log a WAL.
	LogStoreAuto = ""
	// LogStoreWAL is hashicorp/raft-wal: append-only segment files, one
	// write and one fdatasync per append (the default for new data dirs).
	LogStoreWAL = "wal"
	// LogStoreBolt is raft-boltdb/v2 (raft.db): a bbolt B+tree, the log
	// store of every data dir made before raft-wal became the default.
	LogStoreBolt = "bolt"
)

// Paths of the two log stores inside a data dir.
const (
	boltLogFile = "raft.db"
	walLogDir   = "raft-wal"
)

// MinWALSegmentSize is the smallest Config.WALSegmentSize accepted.
const MinWALSegmentSize = 64 << 10

// logStore is the Raft log and stable store of a data dir, whichever kind.
type logStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// chooseLogStore resolves the configured kind against what the data dir
// holds. Switching kinds on a data dir that already holds a log would
// start the node with an empty log beside its real one (a node that
// forgot its votes and entries), so that is refused, naming both.
func chooseLogStore(dataDir, want string) (string, error) {
	_, errBolt := os.Stat(filepath.Join(dataDir, boltLogFile))
	_, errWAL := os.Stat(filepath.Join(dataDir, walLogDir))
	hasBolt, hasWAL := errBolt == nil, errWAL == nil
	switch want {
	case LogStoreAuto:
		switch {
		case hasBolt && hasWAL:
			return "", fmt.Errorf("data dir %s holds two Raft logs (%s and %s/): remove the one not in use or set raft.log_store", dataDir, boltLogFile, walLogDir)
		case hasBolt:
			return LogStoreBolt, nil
		default:
			return LogStoreWAL, nil
		}
	case LogStoreWAL:
		if hasBolt && !hasWAL {
			return "", fmt.Errorf("raft.log_store is %q but data dir %s holds a bolt Raft log (%s): set raft.log_store to %q (or leave it empty) to keep it, or empty the data dir and rejoin the node", want, dataDir, boltLogFile, LogStoreBolt)
		}
		return LogStoreWAL, nil
	case LogStoreBolt:
		if hasWAL && !hasBolt {
			return "", fmt.Errorf("raft.log_store is %q but data dir %s holds a WAL Raft log (%s/): set raft.log_store to %q (or leave it empty) to keep it, or empty the data dir and rejoin the node", want, dataDir, walLogDir, LogStoreWAL)
		}
		return LogStoreBolt, nil
	default:
		return "", fmt.Errorf("raft.log_store %q: want %q or %q (or empty: keep the data dir's, wal for a new one)", want, LogStoreWAL, LogStoreBolt)
	}
}

// openLogStore opens the data dir's Raft log and stable store of the
// given (resolved) kind. It returns the path the disk monitor names in
// its errors. fsync stays on for both kinds: an OK answered before a
// majority has the entry on disk would be a lie after a power cut.
//
// segmentSize is a WAL's segment file size (0: raft-wal's 64 MiB; each is
// preallocated, and Raft compacts a WAL by whole segments).
func openLogStore(dataDir, kind string, segmentSize int, hlog hclog.Logger) (logStore, string, error) {
	switch kind {
	case LogStoreBolt:
		dbPath := filepath.Join(dataDir, boltLogFile)
		store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{
			// bbolt locks the file; without a timeout a second brokerd on the
			// same data dir would hang instead of saying so.
			Timeout: 2 * time.Second,
			// The freelist is rebuilt on open instead of being written on every
			// commit: fewer pages per fsync on the hot path (as etcd does).
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		}})
		if errors.Is(err, bberrors.ErrTimeout) {
			return nil, "", fmt.Errorf("open raft log %s: locked by another process (is another brokerd using this data dir?)", dbPath)
		}
		if err != nil {
			return nil, "", fmt.Errorf("open raft log %s: %w", dbPath, err)
		}
		return store, dbPath, nil
	case LogStoreWAL:
		dir := filepath.Join(dataDir, walLogDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", fmt.Errorf("open raft log %s: %w", dir, err)
		}
		// raft-wal keeps its own metadata (segment list, stable keys) in
		// a bbolt file that it locks with no timeout; bbolt's flock would
		// make a second brokerd on this data dir hang, so take the lock
		// here first, with one.
		lock, err := lockDir(dir)
		if err != nil {
			return nil, "", err
		}
		// raft-wal v0.4.0's Close leaves its metadata file open (and
		// flocked): a node reopened in the same process would hang. We
		// hand it the meta store and close that ourselves.
		meta := &metadb.BoltMetaDB{}
		if segmentSize <= 0 {
			segmentSize = wal.DefaultSegmentSize
		}
		w, err := wal.Open(dir, wal.WithLogger(hlog.Named("wal")), wal.WithMetaStore(meta),
			wal.WithSegmentSize(segmentSize), wal.WithSegmentFiler(segment.NewFiler(dir, privateFS{fs.New()})))
		if err == nil {
			err = privateFiles(dir) // the metadata file raft-wal made 0644
		}
		if err != nil {
			if w != nil {
				_ = w.Close()
			}
			_ = meta.Close()
			lock.Close()
			return nil, "", fmt.Errorf("open raft log %s: %w", dir, err)
		}
		return &lockedWAL{WAL: w, meta: meta, lock: lock}, dir, nil
	default:
		return nil, "", fmt.Errorf("raft log store %q: unknown", kind)
	}
}

// lockedWAL is a raft-wal log holding the data dir's lock until Close.
type lockedWAL struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	lock io.Closer
}

// Close closes the WAL and its metadata, then releases the lock.
func (l *lockedWAL) Close() error {
	err := l.WAL.Close()
	if cerr := l.meta.Close(); err == nil {
		err = cerr
	}
	if cerr := l.lock.Close(); err == nil {
		err = cerr
	}
	return err
}

// RaftLog is a stopped node's Raft log and stable store, for offline tools
// (the jepsen harness's corrupt nemesis); Close releases it.
type RaftLog interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// OpenRaftLog opens the Raft log of a stopped node's data dir, whichever
// kind it holds. It never creates one: a dir without a log is an error.
func OpenRaftLog(dataDir string) (RaftLog, error) {
	_, errBolt := os.Stat(filepath.Join(dataDir, boltLogFile))
	_, errWAL := os.Stat(filepath.Join(dataDir, walLogDir))
	if errBolt != nil && errWAL != nil {
		return nil, fmt.Errorf("no Raft log in %s", dataDir)
	}
	kind, err := chooseLogStore(dataDir, LogStoreAuto)
	if err != nil {
		return nil, err
	}
	s, _, err := openLogStore(dataDir, kind, 0, hclog.NewNullLogger())
	return s, err
}

// privateFS is raft-wal's file system with segment files made 0600 (it
// creates them 0644): the log holds every job's payload.
type privateFS struct{ *fs.FS }

// Create implements types.VFS.
func (p privateFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := p.FS.Create(dir, name, size)
	if err == nil {
		err = os.Chmod(filepath.Join(dir, name), 0o600)
	}
	return f, err
}

// privateFiles makes every file in dir 0600.
func privateFiles(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() {
			if err := os.Chmod(filepath.Join(dir, e.Name()), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockDir takes an exclusive lock on dir/LOCK, waiting at most 2 s, so a
// second brokerd on the same data dir says so instead of hanging.
func lockDir(dir string) (io.Closer, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil // closing the file releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("open raft log %s: locked by another process (is another brokerd using this data dir?)", dir)
			}
			return nil, fmt.Errorf("open raft log %s: lock: %w", dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
