package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftq/raftq/fsm/fsmpb"
	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// njs makes n new jobs named prefix-start … prefix-(start+n-1) in queue q.
func njs(prefix string, start, n int) []*fsmpb.NewJob {
	out := make([]*fsmpb.NewJob, n)
	for i := range out {
		out[i] = nj(fmt.Sprintf("%s-%06d", prefix, start+i), "q")
		out[i].Payload = make([]byte, 256)
	}
	return out
}

// openFile opens a file-backed FSM in a test dir, closed at cleanup.
func openFile(t testing.TB, path string) *FSM {
	t.Helper()
	f, err := Open(path, Options{InitialMmapSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// busyFileHarness is busyHarness on a store file.
func busyFileHarness(t *testing.T, path string) *harness {
	t.Helper()
	h := busyHarness(t)
	f := openFile(t, path)
	if err := restoreBytes(f, snapshotBytes(t, h.f)); err != nil {
		t.Fatal(err)
	}
	h.f = f
	return h
}

// dumpStore copies every key and value of every bucket, meta included.
func dumpStore(t testing.TB, f *FSM) map[string]string {
	t.Helper()
	out := map[string]string{}
	f.view(func(st *state) {
		_ = st.tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				out[string(name)+"/"+string(k)] = string(v)
				return nil
			})
		})
	})
	return out
}

// A store reopened after Close holds the same state and applied index, and
// entries at or below that index are skipped: the restart path that lets
// Raft replay only what follows the store.
func TestStoreReopenKeepsStateAndIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	h := busyFileHarness(t, path)
	h.index = h.f.LastIndex()
	h.one(cmdEnqueue(t0+2*sec, nj("after", "q")))
	hash, idx := h.f.Hash(), h.f.LastIndex()
	if err := h.f.Close(); err != nil {
		t.Fatal(err)
	}
	f := openFile(t, path)
	if f.LastIndex() != idx || f.Hash() != hash {
		t.Fatalf("reopened store at %d hash %s, want %d %s", f.LastIndex(), f.Hash(), idx, hash)
	}
	checkInvariants(t, f)
	if r := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: entry(cmdEnqueue(t0, nj("again", "q")))}); r != nil || f.Hash() != hash {
		t.Fatalf("replayed entry %d was applied again: %v", idx, r)
	}
	f.Apply(&raft.Log{Index: idx + 1, Type: raft.LogCommand, Data: entry(cmdEnqueue(t0, nj("new", "q")))})
	if _, ok := f.Get("new"); !ok || f.LastIndex() != idx+1 {
		t.Fatal("the entry after the store's index was not applied")
	}
}

// A store file that cannot be trusted is refused with ErrStoreCorrupt and
// an error naming the file and what to do; nothing is served from it.
func TestStoreCorruptFileRefused(t *testing.T) {
	damage := map[string]func(t *testing.T, path string){
		"truncated": func(t *testing.T, path string) {
			// The file has room to grow past its data; 64 KiB cuts into
			// the ~600 KiB of jobs.
			if err := os.Truncate(path, 64<<10); err != nil {
				t.Fatal(err)
			}
		},
		"meta pages overwritten": func(t *testing.T, path string) {
			fh, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			junk := make([]byte, 16<<10)
			for i := range junk {
				junk[i] = byte(i*7 + 3)
			}
			if _, err := fh.WriteAt(junk, 0); err != nil {
				t.Fatal(err)
			}
		},
		"not a store": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("not bbolt ", 2000)), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"applied-index record damaged": func(t *testing.T, path string) {
			db, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bbolt.Tx) error {
				v := append([]byte(nil), tx.Bucket(bMeta).Get(metaKey)...)
				v[3] ^= 1 // the index, not the checksum
				return tx.Bucket(bMeta).Put(metaKey, v)
			}); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fsm.db")
			h := busyFileHarness(t, path)
			// Enough jobs that the file spans many pages.
			for i := 0; i < 20; i++ {
				h.index = h.f.LastIndex()
				h.one(cmdEnqueue(t0, njs("bulk", i*100, 100)...))
			}
			if err := h.f.Close(); err != nil {
				t.Fatal(err)
			}
			fn(t, path)
			f, err := Open(path, Options{InitialMmapSize: 1 << 30})
			if err == nil {
				f.Close()
				t.Fatal("damaged store opened")
			}
			if !errors.Is(err, ErrStoreCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "delete it") {
				t.Fatalf("error does not say which file and what to do: %v", err)
			}
		})
	}
}

// Restore into a file store replaces the file atomically: the restored
// state survives a reopen, and a corrupt snapshot leaves the file as it was.
func TestStoreRestoreReplacesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fsm.db")
	src := busyHarness(t)
	snap := snapshotBytes(t, src.f)
	f := openFile(t, path)
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: entry(cmdEnqueue(t0, nj("old", "q")))})
	before := f.Hash()
	if err := restoreBytes(f, snap[:len(snap)-3]); err == nil {
		t.Fatal("truncated snapshot restored")
	}
	if f.Hash() != before || f.LastIndex() != 1 {
		t.Fatal("a failed restore changed the store")
	}
	if _, err := os.Stat(path + restoreSuffix); !os.IsNotExist(err) {
		t.Fatalf("failed restore left its temp file: %v", err)
	}
	if err := restoreBytes(f, snap); err != nil {
		t.Fatal(err)
	}
	if f.Hash() != src.f.Hash() || f.LastIndex() != src.f.LastIndex() {
		t.Fatal("restored store differs from the source")
	}
	if _, ok := f.Get("old"); ok {
		t.Fatal("restore kept a job of the old store")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g := openFile(t, path)
	if g.Hash() != src.f.Hash() || g.LastIndex() != src.f.LastIndex() {
		t.Fatal("restored state did not survive a reopen")
	}
	checkInvariants(t, g)
}

// A snapshot taken before more entries were applied still persists the
// state as of the snapshot, while Apply went on in between (the read
// transaction does not block the writer), and syncing first makes it safe
// for Raft to compact its log.
func TestStoreSnapshotIsConsistentWhileApplying(t *testing.T) {
	h := busyFileHarness(t, filepath.Join(t.TempDir(), "fsm.db"))
	h.index = h.f.LastIndex()
	want := h.f.Hash()
	s, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		h.one(cmdEnqueue(t0, njs("later", i*50, 50)...))
	}
	var sink memSink
	if err := s.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	s.Release()
	g := New()
	if err := restoreBytes(g, sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if g.Hash() != want {
		t.Fatal("snapshot saw entries applied after it was taken")
	}
}

// Two replicas, one on a file store applying entry by entry and one on an
// anonymous store applying in batches, end with byte-identical store
// contents (applied index included) for random command streams.
func TestPropertyStoresIdentical(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		a := &harness{t: t, f: openFile(t, filepath.Join(t.TempDir(), fmt.Sprintf("a%d.db", seed)))}
		b := New()
		g := &gen{r: rand.New(rand.NewPCG(seed, 0x5707e)), f: a.f, now: t0}
		var batch []*raft.Log
		for i := 0; i < 200; i++ {
			a.index++
			l := &raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: g.entry()}
			a.f.Apply(l)
			batch = append(batch, l)
			if len(batch) == 7 {
				b.ApplyBatch(batch)
				batch = nil
			}
		}
		b.ApplyBatch(batch)
		da, db := dumpStore(t, a.f), dumpStore(t, b)
		if len(da) != len(db) {
			t.Fatalf("seed %d: %d keys vs %d", seed, len(da), len(db))
		}
		for k, v := range da {
			if db[k] != v {
				t.Fatalf("seed %d: key %q differs", seed, k)
			}
		}
		checkInvariants(t, a.f)
	}
}

// A store write that fails because the disk is full is rolled back and
// retried until space returns, reported by WriteError meanwhile; the entry
// is then applied exactly once, as on a replica that never ran out. Any
// other write failure stops the node (panic) and changes nothing.
func TestApplyWaitsOutFullDisk(t *testing.T) {
	h := busyFileHarness(t, filepath.Join(t.TempDir(), "fsm.db"))
	ref := busyHarness(t)
	h.index = h.f.LastIndex()
	ref.index = h.index
	fails := 3
	var seen []error
	beforeCommit = func() error {
		if fails > 0 {
			fails--
			return &os.PathError{Op: "write", Path: "fsm.db", Err: syscall.ENOSPC}
		}
		return nil
	}
	sleep = func(time.Duration, <-chan struct{}) { seen = append(seen, h.f.WriteError()) }
	t.Cleanup(func() { beforeCommit = func() error { return nil }; sleep = pause })
	r := h.one(cmdEnqueue(t0, nj("full", "q")))
	ref.one(cmdEnqueue(t0, nj("full", "q")))
	if r.Items[0].Err != nil || len(seen) != 3 {
		t.Fatalf("result %v after %d retries", r.Items[0].Err, len(seen))
	}
	for _, err := range seen {
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), h.f.Path()) {
			t.Fatalf("WriteError while the disk was full: %v", err)
		}
	}
	if h.f.WriteError() != nil || h.f.Hash() != ref.f.Hash() || h.f.LastIndex() != ref.f.LastIndex() {
		t.Fatal("state after the retries differs from a replica that never failed")
	}
	checkInvariants(t, h.f)

	before, idx := h.f.Hash(), h.f.LastIndex()
	beforeCommit = func() error { return errors.New("input/output error") }
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("an I/O error did not stop Apply")
			}
		}()
		h.one(cmdEnqueue(t0, nj("io", "q")))
	}()
	if h.f.Hash() != before || h.f.LastIndex() != idx {
		t.Fatal("a failed Apply changed the store")
	}
}

// Persist writes a job's stored bytes behind the record's tag instead of
// decoding and re-marshalling it; the stream must be byte for byte what
// marshalling each SnapshotRecord gives, so old and new nodes exchange
// snapshots.
func TestSnapshotRawJobsEqualMarshalled(t *testing.T) {
	h := busyHarness(t)
	got := snapshotBytes(t, h.f)
	rr := &recordReader{r: bufio.NewReader(bytes.NewReader(got))}
	var want bytes.Buffer
	rw := &recordWriter{w: bufio.NewWriter(&want)}
	jobs := 0
	for {
		b, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var m proto.Message = &fsmpb.SnapshotRecord{}
		if want.Len() == 0 && rw.w.Buffered() == 0 {
			m = &fsmpb.SnapshotHeader{}
		}
		if err := proto.Unmarshal(b, m); err != nil {
			t.Fatal(err)
		}
		if r, ok := m.(*fsmpb.SnapshotRecord); ok && r.GetJob() != nil {
			jobs++
		}
		if err := rw.write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := rw.w.Flush(); err != nil {
		t.Fatal(err)
	}
	if jobs != h.f.Len() || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("%d job records of %d; persisted stream differs from the marshalled records", jobs, h.f.Len())
	}
}

// A node stopping while its disk is full: the waiting Apply gives up
// without writing, later ones write nothing either (no gap in the
// store), and no snapshot is taken; the store is the state after the last
// entry it applied, for the log to replay at the next start.
func TestStopWaitingForSpaceGivesUp(t *testing.T) {
	h := busyFileHarness(t, filepath.Join(t.TempDir(), "fsm.db"))
	h.index = h.f.LastIndex()
	index, hash := h.f.LastIndex(), h.f.Hash()
	beforeCommit = func() error { return &os.PathError{Op: "write", Path: "fsm.db", Err: syscall.ENOSPC} }
	waits := 0
	sleep = func(time.Duration, <-chan struct{}) {
		if waits++; waits == 2 {
			h.f.StopWaitingForSpace()
		}
	}
	t.Cleanup(func() { beforeCommit = func() error { return nil }; sleep = pause })
	apply := func(id string) interface{} {
		h.index++
		return h.f.Apply(&raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: entry(cmdEnqueue(t0, nj(id, "q")))})
	}
	if r := apply("a"); r != nil || waits != 2 {
		t.Fatalf("gave up with %#v after %d waits", r, waits)
	}
	beforeCommit = func() error { return nil } // space is back, too late
	if r := apply("b"); r != nil {
		t.Fatalf("an Apply after giving up applied: %#v", r)
	}
	if h.f.LastIndex() != index || h.f.Hash() != hash {
		t.Fatal("the store changed after giving up")
	}
	if _, err := h.f.Snapshot(); !errors.Is(err, errGaveUp) {
		t.Fatalf("snapshot after giving up: %v", err)
	}
}

// metaFreelist reads the freelist page id that the newest valid bbolt meta
// page of the store file at path records (pgidNoFreelist: none recorded).
func metaFreelist(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	var best, freelist uint64
	for i := range 2 {
		// A page header (16 bytes), then the meta: magic, version, page
		// size, flags (4 bytes each), the root bucket (16), freelist,
		// pgid and txid (8 each).
		m := b[i*page+16:]
		if binary.LittleEndian.Uint32(m[0:4]) != 0xED0CDAED {
			continue
		}
		if txid := binary.LittleEndian.Uint64(m[48:56]); txid >= best {
			best, freelist = txid, binary.LittleEndian.Uint64(m[32:40])
		}
	}
	return freelist
}

const pgidNoFreelist = ^uint64(0)

// A clean Close records bbolt's free page list, so that the next Open
// reads it instead of walking the whole store to rebuild it; the first
// commit after that drops the record again (a crash must rebuild), and the
// state is the same throughout.
func TestCloseRecordsTheFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	f, err := Open(path, Options{InitialMmapSize: 1 << 26})
	if err != nil {
		t.Fatal(err)
	}
	index := uint64(1)
	for i := 0; i < 2000; i += 50 {
		f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: entry(cmdEnqueue(t0, njs("job", i, 50)...))})
		index++
	}
	if got := metaFreelist(t, path); got != pgidNoFreelist {
		t.Fatalf("while open, the meta records freelist page %d: commits should not write it", got)
	}
	hash, last := f.Hash(), f.LastIndex()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metaFreelist(t, path); got == pgidNoFreelist {
		t.Fatal("after Close no freelist is recorded: the next Open walks the whole store")
	}
	g, err := Open(path, Options{InitialMmapSize: 1 << 26})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Hash() != hash || g.LastIndex() != last {
		t.Fatalf("reopened: hash %s index %d, want %s %d", g.Hash(), g.LastIndex(), hash, last)
	}
	g.Apply(&raft.Log{Index: last + 1, Type: raft.LogCommand, Data: entry(cmdEnqueue(t0, njs("more", 0, 10)...))})
	if got := metaFreelist(t, path); got != pgidNoFreelist {
		t.Fatalf("after a commit the meta still records freelist page %d: a crash now would trust a stale list", got)
	}
}
