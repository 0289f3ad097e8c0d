//go:build linux

package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// mappedRSS is how many bytes of the mapping of path are resident in this
// process (the Rss lines of /proc/self/smaps for that file).
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && fields[len(fields)-1] == path
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb << 10
		}
	}
	return total
}

// fillStore applies total jobs with 1 KiB payloads and random
// idempotency keys (as producers make them) to f, per jobs an entry.
func fillStore(f *FSM, total, per int) {
	index := f.LastIndex() + 1
	for i := 0; i < total; i += per {
		jobs := njs("job", i, per)
		for k, j := range jobs {
			j.Payload = make([]byte, 1024)
			sum := sha256.Sum256([]byte(strconv.Itoa(i + k)))
			j.IdempotencyKey = hex.EncodeToString(sum[:16])
		}
		f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: entry(cmdEnqueue(t0, jobs...))})
		index++
	}
}

// Reading the whole store (a hash, a snapshot) leaves none of it resident
// in the process: the node's RSS does not grow to the size of its store
// file because a snapshot read every page.
func TestWholeStoreReadsLeaveNoResidentPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fsm.db")
	f := openFile(t, path)
	fillStore(f, 40000, 500)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	// Touch every page the way a reader does, so there is something to drop.
	before := mappedRSS(t, path)
	_ = dumpStore(t, f)
	touched := mappedRSS(t, path)
	if touched < size/2 {
		t.Fatalf("reading the store left %d of %d bytes resident: nothing to test", touched, size)
	}
	t.Logf("store %d bytes; resident before %d, after a full read %d", size, before, touched)

	_ = f.Hash()
	if got := mappedRSS(t, path); got > size/10 {
		t.Fatalf("after Hash %d of %d store bytes stay resident", got, size)
	}
	_ = dumpStore(t, f)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if got := mappedRSS(t, path); got > size/10 {
		t.Fatalf("after a snapshot %d of %d store bytes stay resident", got, size)
	}
	// The pages come back on the next read with the same bytes.
	g := New()
	if err := restoreBytes(g, sink.Bytes()); err != nil {
		t.Fatal(err)
	}
	if g.Hash() != f.Hash() {
		t.Fatal("store read after the drop differs from its snapshot")
	}
}

// Filling the store through Apply leaves at most about residentChurn of
// it resident: the pages each write transaction read through the map are
// dropped as the allocations add up (trimResident). Without the trim the
// same fill leaves most of the store resident, which the first half
// checks so that the second half means something.
func TestApplyKeepsTheStoreFromStayingResident(t *testing.T) {
	fill := func(churn int64) (resident, size int64) {
		old := residentChurn
		residentChurn = churn
		defer func() { residentChurn = old }()
		path := filepath.Join(t.TempDir(), "fsm.db")
		f := openFile(t, path)
		// Many small transactions, as a broker applies them: each writes
		// new copies of the pages it changes wherever the freelist has
		// room, so over the fill the reads touch pages all over the file.
		fillStore(f, 30000, 20)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return mappedRSS(t, path), fi.Size()
	}
	untrimmed, size := fill(1 << 62)
	if untrimmed < size/2 {
		t.Fatalf("without the trim, %d of %d store bytes resident: nothing to test", untrimmed, size)
	}
	const churn = 4 << 20
	trimmed, size := fill(churn)
	t.Logf("store %d bytes; resident after the fill: %d untrimmed, %d trimmed every %d allocated", size, untrimmed, trimmed, churn)
	if trimmed > 3*churn || trimmed > size/4 {
		t.Fatalf("with a trim every %d bytes allocated, %d of %d store bytes stay resident", churn, trimmed, size)
	}
}
