package fsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftq/raftq/fsm/fsmpb"
)

var propQueues = []string{"q0", "q1", "q2"}

// gen makes random, mostly valid command streams. It looks at a reference
// FSM to pick targets (ready jobs to lease, leased jobs and their tokens to
// ack), and deliberately mixes in stale tokens, unknown ids, wrong states,
// duplicates and invalid items.
type gen struct {
	r      *rand.Rand
	f      *FSM // the reference replica
	now    int64
	nextID int
	ids    []string // every id ever enqueued (some purged since)
	// side, when set, adds group membership changes to entries, drawn
	// from this stream alone: commands that touch no job leave the job
	// commands of every seed (and what the coverage test saw) as they were.
	side *rand.Rand
}

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func (g *gen) queue() string { return propQueues[g.r.IntN(len(propQueues))] }

// anyID is an id that exists, existed, or never did.
func (g *gen) anyID() string {
	if len(g.ids) == 0 || g.chance(0.05) {
		return fmt.Sprintf("unknown-%d", g.r.IntN(10))
	}
	return g.ids[g.r.IntN(len(g.ids))]
}

func (g *gen) pick(ids []string, n int) []string {
	g.r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	if len(ids) > n {
		ids = ids[:n]
	}
	return ids
}

func (g *gen) inState(s State) []Job {
	var out []Job
	for _, q := range propQueues {
		out = append(out, g.f.List(q, s, "", 0)...)
	}
	return out
}

// token returns j's token, or with some chance a stale one.
func (g *gen) token(j Job) uint64 {
	if g.chance(0.15) && j.LeaseToken > 0 {
		return j.LeaseToken - uint64(1+g.r.IntN(int(min(j.LeaseToken, 5))))
	}
	return j.LeaseToken
}

// targets are jobs for ack/nack/extend: mostly leased, some not.
func (g *gen) targets() []Job {
	js := g.inState(StateLeased)
	g.r.Shuffle(len(js), func(i, j int) { js[i], js[j] = js[j], js[i] })
	js = js[:min(len(js), 1+g.r.IntN(3))]
	if g.chance(0.2) {
		if j, ok := g.f.Get(g.anyID()); ok {
			js = append(js, j)
		} else {
			js = append(js, Job{ID: "unknown-x", LeaseToken: 1})
		}
	}
	return js
}

func (g *gen) command() *fsmpb.Command {
	now := g.now
	switch k := g.r.IntN(100); {
	case k < 25:
		var jobs []*fsmpb.NewJob
		for n := 1 + g.r.IntN(4); n > 0; n-- {
			g.nextID++
			id := fmt.Sprintf("j%05d", g.nextID)
			if g.chance(0.03) && len(g.ids) > 0 {
				// A duplicate of a job that is not terminal, so that no
				// purge earlier in the entry can have removed it: ids are
				// never reused after a purge (the leader makes unique ids),
				// which the history check relies on.
				dup := g.ids[g.r.IntN(len(g.ids))]
				if j, ok := g.f.Get(dup); ok && !j.State.Terminal() {
					id = dup
				}
			}
			j := &fsmpb.NewJob{
				Id: id, Queue: g.queue(), Type: "t", Payload: []byte(id),
				Priority:       int32(g.r.IntN(3)),
				MaxAttempts:    int32(1 + g.r.IntN(4)),
				LeaseDuration:  int64(1+g.r.IntN(30)) * sec,
				InitialBackoff: int64(g.r.IntN(3)) * sec,
				MaxBackoff:     int64(g.r.IntN(10)) * sec,
			}
			if g.chance(0.3) {
				j.RunAt = now + int64(g.r.IntN(10))*sec
			}
			if g.chance(0.3) {
				j.IdempotencyKey = fmt.Sprintf("k%d", g.r.IntN(10))
				j.DedupWindow = int64(g.r.IntN(20)) * sec
			}
			if g.chance(0.4) {
				j.ConcurrencyKey = fmt.Sprintf("c%d", g.r.IntN(3))
			}
			if g.chance(0.15) {
				j.StartDeadline = now + int64(g.r.IntN(15))*sec
			}
			if g.chance(0.15) {
				j.StartToClose = j.LeaseDuration + int64(g.r.IntN(20))*sec
			}
			if g.chance(0.2) {
				j.UniqueKey = fmt.Sprintf("u%d", g.r.IntN(4))
				j.UniqueMode = int32(g.r.IntN(3))
			}
			if g.chance(0.02) {
				j.Type = "" // invalid
			}
			if g.chance(0.3) {
				g.parents(j, jobs)
			}
			g.ids = append(g.ids, id)
			jobs = append(jobs, j)
		}
		if g.chance(0.4) {
			if g.chance(0.05) && len(jobs) > 1 {
				// A cycle: the first job depends on the last.
				jobs[0].DependsOn = append(jobs[0].DependsOn, jobs[len(jobs)-1].Id)
			}
			// A workflow: later jobs of the batch may be parents too.
			if len(jobs) > 1 && g.chance(0.3) && !slices.Contains(jobs[0].DependsOn, jobs[1].Id) {
				jobs[0].DependsOn = append(jobs[0].DependsOn, jobs[1].Id)
			}
			return cmdWorkflow(now, jobs...)
		}
		return cmdEnqueue(now, jobs...)
	case k < 45:
		q := g.queue()
		ids := g.f.ReadyJobs(q, 3, nil)
		if g.chance(0.2) {
			ids = append(ids, g.anyID())
		}
		c := cmdLease(now, fmt.Sprintf("w%d", g.r.IntN(3)), ids...)
		for _, it := range c.GetLease().Items {
			if g.chance(0.3) {
				it.LeaseDuration = int64(1+g.r.IntN(20)) * sec
			}
		}
		return c
	case k < 52:
		var refs []*fsmpb.LeaseRef
		for _, j := range g.targets() {
			r := ref(j.ID, g.token(j))
			if g.chance(0.5) {
				r.Duration = int64(g.r.IntN(20)) * sec
			}
			refs = append(refs, r)
		}
		return cmdExtend(now, refs...)
	case k < 65:
		var refs []*fsmpb.LeaseRef
		for _, j := range g.targets() {
			refs = append(refs, ref(j.ID, g.token(j)))
		}
		if g.chance(0.1) { // ack an acked job again
			if done := g.inState(StateSucceeded); len(done) > 0 {
				j := done[g.r.IntN(len(done))]
				refs = append(refs, ref(j.ID, j.LeaseToken))
			}
		}
		return cmdAck(now, refs...)
	case k < 75:
		var items []*fsmpb.NackItem
		for _, j := range g.targets() {
			it := &fsmpb.NackItem{JobId: j.ID, Token: g.token(j), Error: fmt.Sprintf("e%d", g.r.IntN(5)),
				RetryAfter: -1, Permanent: g.chance(0.1), Release: g.chance(0.1)}
			if g.chance(0.5) {
				it.RetryAfter = int64(g.r.IntN(3)) * sec
			}
			items = append(items, it)
		}
		return cmdNack(now, items...)
	case k < 81:
		if g.chance(0.4) {
			return cmdExpireTimeouts(now, int32(g.r.IntN(4)))
		}
		return cmdExpire(now, int32(g.r.IntN(4)))
	case k < 87:
		return cmdPromote(now, int32(g.r.IntN(4)))
	case k < 91:
		var ids []string
		for n := 1 + g.r.IntN(2); n > 0; n-- {
			ids = append(ids, g.anyID())
		}
		return cmdCancel(now, ids...)
	case k < 93:
		if g.chance(0.5) {
			return cmdPause(now, g.queue())
		}
		return cmdResume(now, g.queue())
	case k < 96:
		if g.chance(0.5) {
			return cmdRedrive(now, g.queue(), int32(g.r.IntN(3)))
		}
		list := g.pick(ids(g.inState(StateDead)), 2)
		if len(list) == 0 || g.chance(0.2) {
			list = append(list, g.anyID())
		}
		return cmdRedrive(now, "", 0, list...)
	case k < 99:
		return cmdPurge(now, now-int64(g.r.IntN(10))*sec, int32(g.r.IntN(5)))
	default:
		return cmdSetNode(now, fmt.Sprintf("n%d", g.r.IntN(3)), fmt.Sprintf("g%d", g.r.IntN(9)), "r")
	}
}

// parents gives j one to three parents: recent jobs (which may be in any
// state, purged or unknown) or earlier jobs of its batch, now and then
// itself or a duplicate (both refused).
func (g *gen) parents(j *fsmpb.NewJob, batch []*fsmpb.NewJob) {
	for n := 1 + g.r.IntN(3); n > 0; n-- {
		var p string
		switch {
		case len(batch) > 0 && g.chance(0.4):
			p = batch[g.r.IntN(len(batch))].Id
		case len(g.ids) > 0:
			p = g.ids[max(0, len(g.ids)-1-g.r.IntN(20))]
		default:
			p = g.anyID()
		}
		if g.chance(0.02) {
			p = j.Id // self-dependency
		}
		if slices.Contains(j.DependsOn, p) && !g.chance(0.05) {
			continue
		}
		j.DependsOn = append(j.DependsOn, p)
	}
	if g.chance(0.4) {
		j.DependencyPolicy = DepPolicyRunAnyway
	}
}

// entry advances the clock and returns one encoded entry of 1–4 commands.
func (g *gen) entry() []byte {
	switch {
	case g.chance(0.05):
		g.now += 40 * sec // leases expire
	case g.chance(0.03):
		g.now -= sec // a new leader's clock may be behind
	default:
		g.now += int64(g.r.IntN(3000)) * 1e6
	}
	var cmds []*fsmpb.Command
	for n := 1 + g.r.IntN(4); n > 0; n-- {
		cmds = append(cmds, g.command())
	}
	if g.side != nil && g.side.Float64() < 0.05 {
		cmds = append(cmds, g.groupMembers())
	}
	return entry(cmds...)
}

// groupMembers is a membership change of group 1 to 3, mostly valid and
// expecting the reference's version, now and then stale, ahead or
// malformed. It draws from g.side only.
func (g *gen) groupMembers() *fsmpb.Command {
	r := g.side
	group := uint32(1 + r.IntN(3))
	var members []string
	for n := range 5 {
		if r.Float64() < 0.5 {
			members = append(members, fmt.Sprintf("n%d", n))
		}
	}
	var expect uint64
	if cur, ok := g.f.GroupMembers()[group]; ok {
		expect = cur.GetVersion()
	}
	switch k := r.IntN(100); {
	case k < 15: // stale or ahead
		expect = uint64(r.IntN(int(expect) + 2))
	case k < 20:
		group = 0 // group 0 has no record
	case k < 25 && len(members) > 0:
		members = append(members, members[0]) // unsorted or a duplicate
	}
	c := cmdMembers(group, expect, members...)
	c.Now = g.now
	return c
}

// history checks the cross-step invariants: a job's token never decreases,
// and a job that succeeded is never leased again (G3, G5).
type history struct {
	tokens    map[string]uint64
	succeeded map[string]bool
}

func (hs *history) check(f *FSM) (err error) {
	f.view(func(st *state) {
		err = eachJob(st, func(j *Job) error {
			if j.LeaseToken < hs.tokens[j.ID] {
				return fmt.Errorf("job %q token went from %d to %d", j.ID, hs.tokens[j.ID], j.LeaseToken)
			}
			hs.tokens[j.ID] = j.LeaseToken
			if j.State == StateLeased && j.LeaseToken == 0 {
				return fmt.Errorf("leased job %q has no token", j.ID)
			}
			if hs.succeeded[j.ID] && j.State != StateSucceeded {
				return fmt.Errorf("job %q succeeded, now %s", j.ID, j.State)
			}
			if j.State == StateSucceeded {
				hs.succeeded[j.ID] = true
			}
			// A job that ran under the cancel policy did so after every
			// parent succeeded (and succeeded is final).
			if j.Attempts > 0 && len(j.Parents) > 0 && j.DependencyPolicy == DepPolicyCancel {
				for _, p := range j.Parents {
					if pj := st.job(p); pj != nil && pj.State != StateSucceeded {
						return fmt.Errorf("job %q ran (%d attempts) while parent %q is %s", j.ID, j.Attempts, p, pj.State)
					}
				}
			}
			return nil
		})
	})
	return err
}

func TestPropertyReplicasAgree(t *testing.T) {
	seeds, entries := 200, 300
	if testing.Short() {
		seeds, entries = 30, 150
	}
	for seed := 0; seed < seeds; seed++ {
		if err := runProperty(uint64(seed), entries); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// runProperty applies one random stream to a replica a (Apply), a replica b
// (ApplyBatch, in batches of random size) and, from a random point, to c
// restored from a snapshot of a taken one entry earlier; all must hash
// equal after every entry and stay internally consistent.
func runProperty(seed uint64, entries int) error {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	a, b := New(), New()
	g := &gen{r: r, f: a, now: t0, side: rand.New(rand.NewPCG(seed, 0x6e0b))}
	hs := &history{tokens: map[string]uint64{}, succeeded: map[string]bool{}}
	snapAt := uint64(1 + r.IntN(entries-1))
	var (
		snap     raft.FSMSnapshot
		snapHash string
		c        *FSM
		pending  []*raft.Log // for b
	)
	for i := uint64(1); i <= uint64(entries); i++ {
		l := &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: g.entry()}
		if g.chance(0.05) {
			l = &raft.Log{Index: i, Term: 1, Type: raft.LogConfiguration}
		}
		a.Apply(l)
		pending = append(pending, l)
		if g.chance(0.5) || i == uint64(entries) {
			b.ApplyBatch(pending)
			pending = nil
		}
		if snap != nil {
			// Persist after a has moved on: copy-on-write must keep the
			// snapshot's view.
			var sink memSink
			if err := snap.Persist(&sink); err != nil {
				return err
			}
			snap.Release()
			snap = nil
			c = New()
			if err := restoreBytes(c, sink.Bytes()); err != nil {
				return err
			}
			if c.Hash() != snapHash || c.LastIndex() != snapAt {
				return fmt.Errorf("restored snapshot of entry %d differs", snapAt)
			}
			prev := &raft.Log{Index: snapAt, Type: raft.LogCommand, Data: []byte("already applied")}
			if c.Apply(prev) != nil {
				return fmt.Errorf("restored FSM re-applied entry %d", snapAt)
			}
		}
		if c != nil {
			c.Apply(l)
		}
		if i == snapAt {
			var err error
			if snap, err = a.Snapshot(); err != nil {
				return err
			}
			snapHash = a.Hash()
		}
		ha := a.Hash()
		if pending == nil && b.Hash() != ha {
			return fmt.Errorf("entry %d: replicas diverge", i)
		}
		if c != nil && c.Hash() != ha {
			return fmt.Errorf("entry %d: restored replica diverges (snapshot at %d)", i, snapAt)
		}
		if err := invariantErr(a); err != nil {
			return fmt.Errorf("entry %d: %v", i, err)
		}
		if err := hs.check(a); err != nil {
			return fmt.Errorf("entry %d: %v", i, err)
		}
	}
	if c == nil {
		return fmt.Errorf("never restored")
	}
	if err := invariantErr(c); err != nil {
		return fmt.Errorf("restored replica: %v", err)
	}
	return nil
}

// TestPropertyCoversStates guards the generator: a stream that never
// reaches some state would make the property test weak.
func TestPropertyCoversStates(t *testing.T) {
	f := New()
	g := &gen{r: rand.New(rand.NewPCG(1, 2)), f: f, now: t0}
	seen := map[State]bool{}
	errs := map[error]bool{}
	for i := uint64(1); i <= 400; i++ {
		res := f.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: g.entry()}).([]Result)
		for _, r := range res {
			for _, it := range r.Items {
				if it.Job != nil {
					seen[it.Job.State] = true
				}
				for _, e := range []error{ErrNotFound, ErrStaleToken, ErrWrongState, ErrQueuePaused, ErrInvalid, ErrDuplicateID} {
					if it.Err != nil && errors.Is(it.Err, e) {
						errs[e] = true
					}
				}
			}
		}
	}
	for s := StateScheduled; s < NumStates; s++ {
		if !seen[s] {
			t.Errorf("generator never reached %s", s)
		}
	}
	if len(errs) != 6 {
		t.Errorf("generator produced only %d kinds of refusal: %v", len(errs), errs)
	}
}
