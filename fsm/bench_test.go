package fsm

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftq/raftq/fsm/fsmpb"
)

// benchBatch is the number of jobs per entry: what a busy leader
// group-commits into one Raft entry.
const benchBatch = 64

func benchJob(i int) *fsmpb.NewJob {
	j := nj(fmt.Sprintf("job-%09d", i), fmt.Sprintf("queue-%d", i%4))
	j.Payload = make([]byte, 128)
	return j
}

// enqueueLogs builds entries enqueuing jobs [from, to) starting at index.
func enqueueLogs(from, to int, index uint64) []*raft.Log {
	var logs []*raft.Log
	for i := from; i < to; i += benchBatch {
		var jobs []*fsmpb.NewJob
		for k := i; k < min(i+benchBatch, to); k++ {
			jobs = append(jobs, benchJob(k))
		}
		logs = append(logs, &raft.Log{Index: index, Type: raft.LogCommand, Data: entry(cmdEnqueue(t0+int64(i), jobs...))})
		index++
	}
	return logs
}

// BenchmarkApplyEnqueue: one op is one job enqueued, in entries of 64
// (decode included).
func BenchmarkApplyEnqueue(b *testing.B) {
	logs := enqueueLogs(0, b.N, 1)
	f := New()
	b.ReportAllocs()
	b.ResetTimer()
	for _, l := range logs {
		f.Apply(l)
	}
}

// BenchmarkApplyLeaseAck: one op is one job leased and then acked, in
// entries of 64, against a state that holds the b.N ready jobs.
func BenchmarkApplyLeaseAck(b *testing.B) {
	f := New()
	pre := enqueueLogs(0, b.N, 1)
	f.ApplyBatch(pre)
	index := uint64(len(pre)) + 1
	var logs []*raft.Log
	for i := 0; i < b.N; i += benchBatch {
		var ids []string
		var refs []*fsmpb.LeaseRef
		for k := i; k < min(i+benchBatch, b.N); k++ {
			id := fmt.Sprintf("job-%09d", k)
			ids = append(ids, id)
			refs = append(refs, ref(id, index))
		}
		now := t0 + int64(b.N+i)
		logs = append(logs,
			&raft.Log{Index: index, Type: raft.LogCommand, Data: entry(cmdLease(now, "worker-1", ids...))},
			&raft.Log{Index: index + 1, Type: raft.LogCommand, Data: entry(cmdAck(now, refs...))})
		index += 2
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, l := range logs {
		f.Apply(l)
	}
	b.StopTimer()
	if j, _ := f.Get("job-000000000"); j.State != StateSucceeded {
		b.Fatalf("job %+v", j)
	}
}

const snapshotJobs = 100_000

var (
	snapOnce sync.Once
	snapFSM  *FSM
	snapData []byte
)

// snapshotFixture is an FSM of 100k jobs (a quarter of them leased) and its
// persisted snapshot.
func snapshotFixture(b *testing.B) (*FSM, []byte) {
	snapOnce.Do(func() {
		f := New()
		logs := enqueueLogs(0, snapshotJobs, 1)
		f.ApplyBatch(logs)
		var ids []string
		for i := 0; i < snapshotJobs; i += 4 {
			ids = append(ids, fmt.Sprintf("job-%09d", i))
		}
		f.Apply(&raft.Log{Index: uint64(len(logs)) + 1, Type: raft.LogCommand, Data: entry(cmdLease(t0+snapshotJobs, "w", ids...))})
		snapFSM = f
		snapData = snapshotBytes(b, f)
	})
	return snapFSM, snapData
}

type discardSink struct{ io.Writer }

func (discardSink) ID() string    { return "discard" }
func (discardSink) Close() error  { return nil }
func (discardSink) Cancel() error { return nil }

// BenchmarkSnapshot measures, on 100k jobs: capture (what Apply waits for),
// capture plus Persist (streamed while Apply goes on), and Restore.
// ns/job is per job of the state.
func BenchmarkSnapshot(b *testing.B) {
	f, data := snapshotFixture(b)
	b.Run("capture", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, _ := f.Snapshot()
			s.Release()
		}
	})
	b.Run("persist", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			s, _ := f.Snapshot()
			if err := s.Persist(discardSink{io.Discard}); err != nil {
				b.Fatal(err)
			}
			s.Release()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/snapshotJobs, "ns/job")
	})
	b.Run("restore", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := New().Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/snapshotJobs, "ns/job")
	})
}
