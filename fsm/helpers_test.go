package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftq/raftq/fsm/fsmpb"
	"go.etcd.io/bbolt"
)

// t0 is the tests' epoch: a realistic unix-ns time.
const t0 = int64(1_700_000_000) * int64(time.Second)

const sec = int64(time.Second)

// harness drives one FSM with consecutive log indexes.
type harness struct {
	t     testing.TB
	f     *FSM
	index uint64
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, f: New()}
}

func entry(cmds ...*fsmpb.Command) []byte {
	b, err := Encode(&fsmpb.Entry{Version: EntryVersion, Commands: cmds})
	if err != nil {
		panic(err)
	}
	return b
}

// apply applies one entry made of cmds and returns its results.
func (h *harness) apply(cmds ...*fsmpb.Command) []Result {
	h.t.Helper()
	h.index++
	r := h.f.Apply(&raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: entry(cmds...)})
	res, ok := r.([]Result)
	if !ok || len(res) != len(cmds) {
		h.t.Fatalf("Apply returned %#v, want %d results", r, len(cmds))
	}
	return res
}

// one applies a single command and returns its result.
func (h *harness) one(c *fsmpb.Command) Result {
	h.t.Helper()
	return h.apply(c)[0]
}

// nextToken is the token a Lease applied next will carry.
func (h *harness) nextToken() uint64 { return h.index + 1 }

func (h *harness) get(id string) Job {
	h.t.Helper()
	j, ok := h.f.Get(id)
	if !ok {
		h.t.Fatalf("job %q not found", id)
	}
	return j
}

func (h *harness) wantState(id string, s State) Job {
	h.t.Helper()
	j := h.get(id)
	if j.State != s {
		h.t.Fatalf("job %q state %s, want %s (%+v)", id, j.State, s, j)
	}
	return j
}

func (h *harness) counts(queue string) [NumStates]int64 {
	h.t.Helper()
	st := h.f.Stats([]string{queue})
	if len(st) != 1 {
		h.t.Fatalf("Stats(%q) = %+v", queue, st)
	}
	return st[0].Counts
}

// wantCounts checks a queue's counts, given as state → count (others 0).
func (h *harness) wantCounts(queue string, want map[State]int64) {
	h.t.Helper()
	var w [NumStates]int64
	for s, n := range want {
		w[s] = n
	}
	if got := h.counts(queue); got != w {
		h.t.Fatalf("counts of %q = %v, want %v", queue, got, w)
	}
}

func ids(jobs []Job) []string {
	out := []string{}
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func eq[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wantIs(t testing.TB, got, want error) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Fatalf("error %v, want nil", got)
		}
		return
	}
	if !errors.Is(got, want) {
		t.Fatalf("error %v, want %v", got, want)
	}
}

// ---- command builders ----

func nj(id, queue string) *fsmpb.NewJob {
	return &fsmpb.NewJob{
		Id: id, Queue: queue, Type: "t", Payload: []byte("p-" + id),
		MaxAttempts: 3, LeaseDuration: 30 * sec, InitialBackoff: sec, MaxBackoff: 60 * sec,
	}
}

func cmdEnqueue(now int64, jobs ...*fsmpb.NewJob) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE, Now: now,
		Body: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{Jobs: jobs}}}
}

func cmdWorkflow(now int64, jobs ...*fsmpb.NewJob) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE_WORKFLOW, Now: now,
		Body: &fsmpb.Command_EnqueueWorkflow{EnqueueWorkflow: &fsmpb.Enqueue{Jobs: jobs}}}
}

func cmdLease(now int64, worker string, ids ...string) *fsmpb.Command {
	l := &fsmpb.Lease{WorkerId: worker}
	for _, id := range ids {
		l.Items = append(l.Items, &fsmpb.LeaseItem{JobId: id})
	}
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_LEASE, Now: now,
		Body: &fsmpb.Command_Lease{Lease: l}}
}

func ref(id string, token uint64) *fsmpb.LeaseRef { return &fsmpb.LeaseRef{JobId: id, Token: token} }

func cmdExtend(now int64, refs ...*fsmpb.LeaseRef) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXTEND_LEASE, Now: now,
		Body: &fsmpb.Command_ExtendLease{ExtendLease: &fsmpb.ExtendLease{Items: refs}}}
}

func cmdAck(now int64, refs ...*fsmpb.LeaseRef) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_ACK, Now: now,
		Body: &fsmpb.Command_Ack{Ack: &fsmpb.Ack{Items: refs}}}
}

func cmdNack(now int64, items ...*fsmpb.NackItem) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_NACK, Now: now,
		Body: &fsmpb.Command_Nack{Nack: &fsmpb.Nack{Items: items}}}
}

func cmdExpire(now int64, limit int32) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE_LEASES, Now: now,
		Body: &fsmpb.Command_ExpireLeases{ExpireLeases: &fsmpb.ExpireLeases{Limit: limit}}}
}

func cmdPromote(now int64, limit int32) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PROMOTE, Now: now,
		Body: &fsmpb.Command_Promote{Promote: &fsmpb.Promote{Limit: limit}}}
}

func cmdCancel(now int64, ids ...string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_CANCEL, Now: now,
		Body: &fsmpb.Command_Cancel{Cancel: &fsmpb.Cancel{JobIds: ids}}}
}

func cmdPause(now int64, q string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PAUSE_QUEUE, Now: now,
		Body: &fsmpb.Command_PauseQueue{PauseQueue: &fsmpb.QueueRef{Queue: q}}}
}

func cmdResume(now int64, q string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_RESUME_QUEUE, Now: now,
		Body: &fsmpb.Command_ResumeQueue{ResumeQueue: &fsmpb.QueueRef{Queue: q}}}
}

func cmdRedrive(now int64, queue string, limit int32, ids ...string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_REDRIVE, Now: now,
		Body: &fsmpb.Command_Redrive{Redrive: &fsmpb.Redrive{Queue: queue, JobIds: ids, Limit: limit}}}
}

func cmdPurge(now, before int64, limit int32) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PURGE, Now: now,
		Body: &fsmpb.Command_Purge{Purge: &fsmpb.Purge{Before: before, Limit: limit}}}
}

func cmdSetNode(now int64, id, grpcAddr, raftAddr string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_SET_NODE, Now: now,
		Body: &fsmpb.Command_SetNode{SetNode: &fsmpb.NodeMeta{NodeId: id, GrpcAddr: grpcAddr, RaftAddr: raftAddr}}}
}

// ---- snapshot plumbing ----

// memSink is a raft.SnapshotSink writing to memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
	failAfter         int // fail writes once this many bytes were written (0: never)
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.failAfter > 0 && s.Len()+len(p) > s.failAfter {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// snapshotBytes takes and persists a snapshot of f.
func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	var sink memSink
	if err := s.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

func restoreBytes(f *FSM, b []byte) error {
	return f.Restore(io.NopCloser(bytes.NewReader(b)))
}

// ---- invariants ----

// checkInvariants verifies that every index and count agrees with the jobs
// tree: the state is internally consistent, whatever the command history.
func checkInvariants(t testing.TB, f *FSM) {
	t.Helper()
	if err := invariantErr(f); err != nil {
		t.Fatal(err)
	}
}

// eachJob calls fn for every stored job in id order.
func eachJob(st *state, fn func(j *Job) error) error {
	return st.jobs.ForEach(func(k, v []byte) error {
		j := decodeJob(v)
		if string(k) != j.ID {
			return fmt.Errorf("jobs bucket key %q holds job %q", k, j.ID)
		}
		return fn(j)
	})
}

func keyN(b interface{ Stats() bbolt.BucketStats }) int { return b.Stats().KeyN }

func invariantErr(f *FSM) (err error) {
	f.view(func(st *state) { err = stateInvariantErr(st) })
	return err
}

func stateInvariantErr(st *state) error {
	counts := map[string]*[NumStates]int64{}
	var nReady, nSched, nLeased, nTerm, nReadyKeyed, nLeasedKeyed, nChildEdges, nWaitEdges int
	var nToStart, nToClose, nUnique int
	err := eachJob(st, func(j *Job) error {
		if j.State < StateScheduled || j.State >= NumStates {
			return fmt.Errorf("job %q in state %d", j.ID, j.State)
		}
		if err := depInvariantErr(st, j); err != nil {
			return err
		}
		nChildEdges += len(j.Parents)
		nWaitEdges += len(j.WaitingOn)
		c := counts[j.Queue]
		if c == nil {
			c = new([NumStates]int64)
			counts[j.Queue] = c
		}
		c[j.State]++
		if st.byState.Get(stateKey(j.Queue, j.State, j.ID)) == nil {
			return fmt.Errorf("job %q missing from state index", j.ID)
		}
		for _, ix := range []struct {
			name string
			b    *bbolt.Bucket
			of   indexOf
		}{{"ready", st.ready, readyOf}, {"ready-age", st.age, ageOf}, {"scheduled", st.sched, scheduledOf},
			{"lease", st.leases, leaseOf}, {"terminal", st.term, terminalOf},
			{"ready-key", st.readyKey, readyKeyedOf}, {"leased-key", st.leasedKey, leasedKeyedOf},
			{"to-start", st.toStart, toStartOf}, {"to-close", st.toClose, toCloseOf}} {
			k, want := ix.of.key(j), ix.of.in(j)
			if in := ix.b.Get(k) != nil; in != want {
				return fmt.Errorf("job %q (%s): in %s index = %v", j.ID, j.State, ix.name, in)
			}
		}
		if toStartOf.in(j) {
			nToStart++
		}
		if toCloseOf.in(j) {
			nToClose++
		}
		if k, in := uniqueOf(j); in {
			nUnique++
			if v := st.unique.Get(k); string(v) != j.ID {
				return fmt.Errorf("job %q holds unique key %q but the index names %q", j.ID, j.UniqueKey, v)
			}
		}
		switch {
		case j.State == StateReady && j.ConcurrencyKey != "":
			nReadyKeyed++
		case j.State == StateReady:
			nReady++
		case j.State == StateScheduled:
			nSched++
		case j.State == StateLeased:
			nLeased++
			if j.ConcurrencyKey != "" {
				nLeasedKeyed++
			}
		case j.State.Terminal():
			nTerm++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if keyN(st.toStart) != nToStart || keyN(st.toClose) != nToClose || keyN(st.unique) != nUnique {
		return fmt.Errorf("timeout/unique indexes %d %d %d; want %d %d %d", keyN(st.toStart), keyN(st.toClose), keyN(st.unique), nToStart, nToClose, nUnique)
	}
	if keyN(st.depChildren) != nChildEdges || keyN(st.depWaiting) != nWaitEdges {
		return fmt.Errorf("dependency indexes children=%d waiting=%d; want %d %d", keyN(st.depChildren), keyN(st.depWaiting), nChildEdges, nWaitEdges)
	}
	if keyN(st.readyKey) != nReadyKeyed || keyN(st.leasedKey) != nLeasedKeyed {
		return fmt.Errorf("key indexes ready=%d leased=%d; want %d %d", keyN(st.readyKey), keyN(st.leasedKey), nReadyKeyed, nLeasedKeyed)
	}
	if keyN(st.ready) != nReady || keyN(st.age) != nReady+nReadyKeyed || keyN(st.sched) != nSched ||
		keyN(st.leases) != nLeased || keyN(st.term) != nTerm || keyN(st.byState) != keyN(st.jobs) {
		return fmt.Errorf("index sizes ready=%d age=%d sched=%d leases=%d term=%d bystate=%d; want %d %d %d %d %d %d",
			keyN(st.ready), keyN(st.age), keyN(st.sched), keyN(st.leases), keyN(st.term), keyN(st.byState),
			nReady, nReady, nSched, nLeased, nTerm, keyN(st.jobs))
	}
	err = st.queues.ForEach(func(k, v []byte) error {
		q := decodeQueue(string(k), v)
		var want [NumStates]int64
		if c := counts[q.name]; c != nil {
			want = *c
		}
		if q.counts != want {
			return fmt.Errorf("queue %q counts %v, recount %v", q.name, q.counts, want)
		}
		delete(counts, q.name)
		return nil
	})
	if err != nil {
		return err
	}
	for q := range counts {
		return fmt.Errorf("queue %q has jobs but no record", q)
	}
	if keyN(st.idem) != keyN(st.idemExp) {
		return fmt.Errorf("idempotency %d entries, expiry index %d", keyN(st.idem), keyN(st.idemExp))
	}
	return st.idem.ForEach(func(k, _ []byte) error {
		q, key, ok := cutStr(k)
		if !ok {
			return fmt.Errorf("idempotency key %x", k)
		}
		e, _ := st.idemGet(q, string(key))
		if st.idemExp.Get(idemExpKeyOf(e.expires, e.queue, e.key)) == nil {
			return fmt.Errorf("idempotency %q/%q missing from expiry index", e.queue, e.key)
		}
		return nil
	})
}

// update runs fn in a store write transaction behind the FSM's back, for
// tests that damage or inspect the state directly.
func (f *FSM) update(t testing.TB, fn func(st *state)) {
	t.Helper()
	err := f.db.Update(func(tx *bbolt.Tx) error {
		st, err := newState(tx)
		if err != nil {
			return err
		}
		fn(st)
		st.flush()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.gen.Add(1) // the cached hash is stale
}

// killJobs enqueues jobs ids and makes them dead: leased at t0, nacked
// permanently with error "bad" at t0+1s.
func killJobs(h *harness, ids ...string) {
	enqueue(h, ids...)
	for _, id := range ids {
		tk := lease(h, t0, id)
		h.one(cmdNack(t0+sec, &fsmpb.NackItem{JobId: id, Token: tk, Error: "bad", Permanent: true}))
	}
}

// depInvariantErr checks one job's workflow fields against its state and
// the dependency indexes: a job waits exactly while it has parents to wait
// on, never on a terminal or missing parent, and every edge is indexed.
func depInvariantErr(st *state, j *Job) error {
	if (j.State == StateWaiting) != (len(j.WaitingOn) > 0) {
		return fmt.Errorf("job %q is %s waiting on %v", j.ID, j.State, j.WaitingOn)
	}
	if len(j.Parents) == 0 && (j.ParentFailed || j.DependencyPolicy != 0) {
		return fmt.Errorf("job %q without parents has dependency fields", j.ID)
	}
	for _, p := range j.Parents {
		if !hasKey(st.depChildren, depKey(p, j.ID)) {
			return fmt.Errorf("edge %q → %q missing from dep_children", p, j.ID)
		}
	}
	for _, p := range j.WaitingOn {
		if !containsStr(j.Parents, p) {
			return fmt.Errorf("job %q waits on %q, not a parent", j.ID, p)
		}
		if !hasKey(st.depWaiting, depKey(p, j.ID)) {
			return fmt.Errorf("edge %q → %q missing from dep_waiting", p, j.ID)
		}
		pj := st.job(p)
		if pj == nil || pj.State.Terminal() {
			return fmt.Errorf("job %q waits on %q, which is gone or terminal", j.ID, p)
		}
	}
	if j.ParentFailed && j.DependencyPolicy == DepPolicyCancel && j.State != StateCancelled {
		return fmt.Errorf("job %q: a parent failed under the cancel policy, yet it is %s", j.ID, j.State)
	}
	return nil
}
