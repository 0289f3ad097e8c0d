package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// Options tune the store. The zero value is what brokerd uses.
type Options struct {
	// InitialMmapSize is the store's initial memory map, in bytes (default
	// DefaultMmapSize). bbolt remaps when the file outgrows it, and a remap
	// waits for every read transaction, including a snapshot's Persist; a
	// map larger than the store means the writer never waits. It is
	// address space, not memory.
	InitialMmapSize int
}

// DefaultMmapSize is the default Options.InitialMmapSize: 16 GiB of address
// space (etcd uses 10 GiB), enough for tens of millions of queued jobs.
const DefaultMmapSize = 16 << 30

// anonMmapSize is the map of New's anonymous stores: tests and scratch
// FSMs hold little, and there may be hundreds alive at once.
const anonMmapSize = 1 << 30

// ErrStoreCorrupt is wrapped by Open's error for a store file that cannot
// be trusted: not a bbolt file, a failed bbolt checksum, or our own
// applied-index record failing its checksum.
var ErrStoreCorrupt = errors.New("fsm: store file corrupt")

// dbRef holds an anonymous store for the cleanup that closes it.
type dbRef struct{ db *bbolt.DB }

func openDB(path string, mmap int) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		// bbolt locks the file; without a timeout a second process on the
		// same data dir would hang instead of saying so.
		Timeout: 2 * time.Second,
		// The Raft log is the durable source: a commit per entry need not
		// reach the disk. Snapshot() syncs before Raft may compact the log
		// behind it, and a store found behind the latest snapshot is
		// replaced by it (brokerd).
		NoSync: true,
		// Nor need growing the file be synced (bbolt would fsync the
		// whole store every 16 MiB it grows).
		NoGrowSync:      true,
		NoFreelistSync:  true,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: mmap,
	})
	if err != nil {
		return nil, err
	}
	if err := db.Update(createBuckets); err != nil {
		_ = db.Close()
		return nil, err
	}
	// Without a synced freelist, bbolt rebuilt it at Open by walking every
	// page of the store: all of fsm.db was just read through the map (at
	// 10M jobs, an 11.5 GB file resident after a restart). Nothing needs
	// those pages resident now (resident_linux.go).
	dropAllResident(db)
	return db, nil
}

// Open opens (or creates) the FSM's store at path and reads the index it
// was applied up to: Raft then replays only the entries after it. A store
// file that cannot be trusted is refused with an error wrapping
// ErrStoreCorrupt; the operator deletes it and the node restores its latest
// snapshot and replays the log, or rejoins from its peers.
func Open(path string, opts Options) (*FSM, error) {
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = DefaultMmapSize
	}
	// A restore that crashed before its rename leaves its temp file.
	_ = os.Remove(path + restoreSuffix)
	if err := checkFileSize(path); err != nil {
		return nil, fmt.Errorf("%w: %s: %v; delete it and restart: the node restores its latest snapshot and replays the Raft log (or rejoins from its peers)", ErrStoreCorrupt, path, err)
	}
	db, err := openDB(path, opts.InitialMmapSize)
	switch {
	case errors.Is(err, bberrors.ErrTimeout):
		return nil, fmt.Errorf("open fsm store %s: locked by another process (is another brokerd using this data dir?)", path)
	case errors.Is(err, bberrors.ErrInvalid), errors.Is(err, bberrors.ErrChecksum), errors.Is(err, bberrors.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %s: %v; delete it and restart: the node restores its latest snapshot and replays the Raft log (or rejoins from its peers)", ErrStoreCorrupt, path, err)
	case err != nil:
		return nil, fmt.Errorf("open fsm store %s: %w", path, err)
	}
	f := &FSM{db: db, path: path, opts: opts}
	if err := f.loadIndex(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w: %s: %v; delete it and restart: the node restores its latest snapshot and replays the Raft log (or rejoins from its peers)", ErrStoreCorrupt, path, err)
	}
	return f, nil
}

// New returns an empty FSM on an anonymous store: a temporary file that
// is unlinked at once and closed when the FSM is garbage (or by Close). It
// is for tests and for scratch FSMs (validating a backup); a node uses
// Open. New panics if no temporary file can be created.
func New() *FSM {
	db, err := openAnon()
	if err != nil {
		panic(fmt.Sprintf("fsm: anonymous store: %v", err))
	}
	f := &FSM{db: db, opts: Options{InitialMmapSize: anonMmapSize}, ref: &dbRef{db: db}}
	runtime.AddCleanup(f, func(r *dbRef) { go r.db.Close() }, f.ref)
	return f
}

// openAnon creates a store in an unlinked temporary file.
func openAnon() (*bbolt.DB, error) {
	tf, err := os.CreateTemp("", "raftq-fsm-*.db")
	if err != nil {
		return nil, err
	}
	name := tf.Name()
	_ = tf.Close()
	db, err := openDB(name, anonMmapSize)
	_ = os.Remove(name)
	return db, err
}

func (f *FSM) loadIndex() error {
	return f.db.View(func(tx *bbolt.Tx) error {
		st, err := newState(tx)
		if err != nil {
			return err
		}
		f.lastIndex.Store(st.applied)
		return nil
	})
}

// describe names the store in errors.
func (f *FSM) describe() string {
	if f.path == "" {
		return "(anonymous store)"
	}
	return f.path
}

// Path is the store file, "" for New's anonymous store.
func (f *FSM) Path() string { return f.path }

// Close makes the store durable and closes it. It waits for open snapshots
// to be released. The FSM must not be used afterwards.
func (f *FSM) Close() error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	f.writeFreelist()
	err := f.db.Sync()
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	f.db = nil
	return err
}

// writeFreelist records bbolt's list of free pages in the store, with
// one last commit that changes no key (wmu and mu held, by Close).
//
// Why: the store runs with NoFreelistSync (a commit never writes the
// list, whose size grows with the free pages), so an Open without a
// recorded list rebuilds it by walking and checking every page. That is
// O(store): ~2 s at 1M jobs, and at 10M jobs (an 11.5 GB file, more than
// the page cache held) a follower was still walking after 6 minutes.
// After a clean Close the next Open reads the list instead; the first
// commit after it drops the record again, so a crash later still
// rebuilds, as it must. Best effort: a failure leaves the rebuild.
func (f *FSM) writeFreelist() {
	if f.gaveUp.Load() || f.db.IsReadOnly() {
		return // a full disk: leave the store exactly as it was
	}
	f.db.NoFreelistSync = false
	_ = f.db.Update(func(*bbolt.Tx) error { return nil })
	f.db.NoFreelistSync = true
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkFileSize refuses a store file shorter than its own meta page says
// (a truncated copy, a torn write at the end): bbolt would map the missing
// pages and the first read of one would kill the process with SIGBUS
// instead of an error. It reads bbolt's two meta pages (layout of bbolt
// v1: a 16-byte page header, then magic, version, page size, flags, root,
// freelist, high-water page id, txid and an FNV-64a checksum) and trusts
// the valid one with the higher txid. A file without a valid meta page is
// left for bbolt to refuse; a missing or empty file is a new store.
func checkFileSize(path string) error {
	fh, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	type meta struct{ pageSize, pgid, txid uint64 }
	read := func(off int64) (meta, bool) {
		var b [80]byte
		if _, err := fh.ReadAt(b[:], off); err != nil && !errors.Is(err, io.EOF) {
			return meta{}, false
		}
		m := b[16:]
		h := fnv.New64a()
		h.Write(m[:56])
		if binary.LittleEndian.Uint32(m) != 0xED0CDAED || binary.LittleEndian.Uint64(m[56:]) != h.Sum64() {
			return meta{}, false
		}
		return meta{pageSize: uint64(binary.LittleEndian.Uint32(m[8:])), pgid: binary.LittleEndian.Uint64(m[40:]),
			txid: binary.LittleEndian.Uint64(m[48:])}, true
	}
	m0, ok0 := read(0)
	ps := int64(os.Getpagesize())
	if ok0 {
		ps = int64(m0.pageSize)
	}
	m1, ok1 := read(ps)
	best, ok := m0, ok0
	if ok1 && (!ok0 || m1.txid > m0.txid) {
		best, ok = m1, true
	}
	if !ok {
		return nil
	}
	if need := best.pgid * best.pageSize; uint64(fi.Size()) < need {
		return fmt.Errorf("truncated: the file is %d bytes, its meta page needs %d", fi.Size(), need)
	}
	return nil
}
