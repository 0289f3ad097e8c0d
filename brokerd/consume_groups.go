package brokerd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/apierr"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// A Consume stream whose queues are in several groups (a worker pool whose
// queues hash apart) is served by one fan-in here: a part per group, each a
// Consume stream of its own opened through consumeIn (so relayed to that
// group's leader), their jobs and notices merged onto the worker's stream.
//
// Credit. The worker's credit is the router's: it is never granted to the
// parts beyond what the worker granted, so the parts together can never
// push more jobs than the worker asked for, whatever they do (each part's
// server already holds its stream to its credit). The invariant is
//
//	pool + Σ part.credit = the worker's credit left
//
// where pool is credit held here and part.credit what a part was granted
// and has not used. A part's unused credit comes back to the pool when the
// part ends. Nothing is over-granted: the only way to hand back a job a
// part leased beyond the worker's credit would be a release (an FSM nack
// with release, which undoes the attempt), which no API exposes to another
// node, costs two Raft entries per job and puts the job at the back of its
// queue; under load it would churn and reorder every group's queue.
//
// Work conservation without over-granting:
//   - credit coming in (the open's, the worker's credit frames, a part's
//     leftovers) goes first one to each part holding none, then each part
//     up to an even share, then the rest to the part that delivered most
//     recently (rotating while none has): with
//     the worker's credit left at least the number of groups, every group
//     has a fetch parked and a job ready in any group is pushed at once;
//   - credit can be taken back from a part only by closing it (its server
//     then ends the parked fetch, pushes what it leased and ends), so when
//     a part below its even share has jobs ready (as this node's replica of its
//     group shows) and no credit is in the pool, the router closes a part
//     that holds credit and is idle (see rebalance), and its credit moves
//     on when it ends; the group is reopened at once with nothing.
//
// So a job of a group holding no credit waits for the first of: the
// worker's next credit frame (it goes to parts without credit first), or a
// move from an idle part (the replica's lag plus up to consumeRebalanceGap
// plus what is left of the holder's consumeIdleMin plus one part's close
// and reopen: about 100-200 ms), or, when every part holding credit
// delivered within crossGroupSlice (the worker is busy with their jobs),
// up to crossGroupSlice.
//
// Parts that end. A part whose group's leader moved (or whose relay broke)
// ends; its unused credit returns to the pool and the group is opened
// again (at its new leader, backing off while it has none) while the
// worker's stream stays up. Jobs it pushed that the worker holds stay the
// worker's: their leases are valid at the new leader until they expire,
// and the worker's credit already counts them until it grants credit
// again. The new part does not watch them, so the router watches them on
// this node's replica of their group and pushes their cancel and lost-
// lease notices itself (a replica can lag, never show what was not
// committed).

const (
	// consumeRebalanceGap is the least time between two looks at the
	// groups' replicas for a group that has jobs ready and no credit.
	consumeRebalanceGap = 20 * time.Millisecond
	// consumeIdleMin is the least time a part holds credit without
	// delivering before it is closed to move the credit, even when this
	// node's replica shows its group with nothing ready: longer than a
	// follower's replica lags its leader (a follower learns a commit
	// with the next append, which Raft sends within its commit timeout,
	// 50 ms), and than a lease under way takes.
	consumeIdleMin = 100 * time.Millisecond
	// consumePartBackoff is the first wait before a group whose part ended
	// before it was opened is opened again; it doubles up to
	// consumePartBackoffMax.
	consumePartBackoff    = 50 * time.Millisecond
	consumePartBackoffMax = time.Second
)

// splitConsume splits an open frame by its queues' groups, as splitFetch
// does a Fetch: each part names its group's queues and weights.
func (r *router) splitConsume(open *raftqv1.ConsumeOpen) []consumePart {
	fetch := r.splitFetch(&raftqv1.FetchRequest{Queues: open.GetQueues(), QueueWeights: open.GetQueueWeights(),
		WorkerId: open.GetWorkerId(), LeaseDuration: open.GetLeaseDuration()})
	parts := make([]consumePart, len(fetch))
	for i, p := range fetch {
		qs := slices.Clone(p.req.Queues)
		for q := range p.req.QueueWeights {
			if !slices.Contains(qs, q) {
				qs = append(qs, q)
			}
		}
		parts[i] = consumePart{n: p.n, queues: qs, open: &raftqv1.ConsumeOpen{Queues: p.req.Queues, QueueWeights: p.req.QueueWeights,
			WorkerId: open.GetWorkerId(), LeaseDuration: open.GetLeaseDuration()}}
	}
	return parts
}

// consumePart is one group's share of a fanned-in Consume stream.
type consumePart struct {
	n      *Node
	queues []string
	open   *raftqv1.ConsumeOpen // without credit: the router grants it
}

// fanGroup is the router's state for one group of a fanned-in stream
// (owned by the run loop).
type fanGroup struct {
	consumePart
	sub      *fanSub   // the running part, nil while none
	credit   int       // granted to sub and not used
	max      int       // the most sub may hold (its opened frame); 0 until opened
	closing  bool      // sub was closed to take its credit back
	answered bool      // the group's first part opened or ended
	lastJob  time.Time // when sub last pushed a job
	lastLent time.Time // when sub last got credit while holding none
	failures int       // parts in a row that ended before they opened
	reopen   *time.Timer
}

// eligible reports whether the group's part can take credit now.
func (fg *fanGroup) eligible() bool { return fg.sub != nil && fg.max > 0 && !fg.closing }

// fanJob is a job the fan-in pushed, until its lease ends.
type fanJob struct {
	fg         *fanGroup
	sub        *fanSub // nil once its part ended: the router watches it
	token      uint64
	deadline   time.Time
	cancelSent bool
}

// fanEvent is what a part hands the run loop: a frame it sends, or its end.
type fanEvent struct {
	s   *fanSub
	m   *raftqv1.ConsumeResponse
	end bool
	err error
}

// fanConsume is one worker's Consume stream fanned out over groups.
type fanConsume struct {
	r         *router
	st        grpc.BidiStreamingServer[raftqv1.ConsumeRequest, raftqv1.ConsumeResponse]
	ctx       context.Context
	maxCredit int
	groups    []*fanGroup
	events    chan fanEvent
	reopens   chan *fanGroup
	wg        sync.WaitGroup

	out     chan *raftqv1.ConsumeResponse
	sendErr chan error

	pool       int // the worker's credit not granted to a part
	tracked    map[string]*fanJob
	orphans    int // tracked jobs whose part ended
	rot        int
	closingAll bool // the worker closed its side
}

// consumeAcross serves a Consume stream whose open frame names queues of
// several groups (see the comment at the top of this file).
func (b *brokerRouter) consumeAcross(st grpc.BidiStreamingServer[raftqv1.ConsumeRequest, raftqv1.ConsumeResponse], open *raftqv1.ConsumeOpen, parts []consumePart) error {
	fc := &fanConsume{
		r: b.r, st: st, maxCredit: b.r.h.cfg.Limits.MaxFetchJobs,
		events: make(chan fanEvent), reopens: make(chan *fanGroup),
		pool: int(open.GetCredit()), tracked: map[string]*fanJob{},
	}
	for _, p := range parts {
		fc.groups = append(fc.groups, &fanGroup{consumePart: p})
	}
	return fc.run()
}

func (fc *fanConsume) run() error {
	ctx, cancel := context.WithCancel(fc.st.Context())
	defer cancel()
	fc.ctx = ctx
	host := fc.r.h

	// The sender, as the one-group server's: the only writer of the
	// worker's stream.
	fc.out = make(chan *raftqv1.ConsumeResponse, consumeSendQueue)
	fc.sendErr = make(chan error, 1)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for f := range fc.out {
			if err := fc.st.Send(f); err != nil {
				fc.sendErr <- err
				return
			}
		}
	}()
	finish := func(err error) error {
		// A broken worker stream, a bad frame or a refusal cancels every
		// part; a clean end comes only once every part has ended.
		if err != nil {
			cancel()
		}
		for _, fg := range fc.groups {
			if fg.reopen != nil {
				fg.reopen.Stop()
			}
		}
		fc.wg.Wait()
		close(fc.out)
		var flush <-chan time.Time
		if err != nil {
			t := time.NewTimer(consumeFlush)
			defer t.Stop()
			flush = t.C
		}
		select {
		case <-sent:
		case <-fc.st.Context().Done():
		case <-flush:
		}
		if err == nil {
			select {
			case err = <-fc.sendErr:
			default:
			}
		}
		return err
	}
	stopped := func() error { id, addr := host.leader(); return host.notLeader(id, addr) }

	frames := readFrames(ctx, fc.st.Recv)

	// Any change in a group's replica pokes the loop: a group without
	// credit may have jobs ready, a job the router watches may have
	// changed.
	poke := make(chan struct{}, 1)
	for _, fg := range fc.groups {
		if fg.n.remote {
			continue // a group this node does not run has no replica here
		}
		go func(f *fsm.FSM) {
			for {
				ch := f.Changed()
				select {
				case <-ch:
					select {
					case poke <- struct{}{}:
					default:
					}
				case <-ctx.Done():
					return
				}
			}
		}(fg.n.fsm)
	}

	for _, fg := range fc.groups {
		fc.start(fg)
	}
	opened := false
	var rebalanceAt, watchAt <-chan time.Time
	var lastRebalance, lastWatch time.Time
	// dirty: something changed that may leave a part without credit
	// while its group has jobs ready (a replica changed, a part used its
	// credit or opened).
	dirty := false
	for {
		if !opened && fc.allAnswered() {
			// Every group accepted the open (or has no leader now and is
			// opened again later): so does the stream.
			opened = true
			if err := fc.push(&raftqv1.ConsumeResponse{Frame: &raftqv1.ConsumeResponse_Opened{
				Opened: &raftqv1.ConsumeOpened{MaxCredit: int32(fc.maxCredit)}}}); err != nil {
				return finish(err)
			}
		}
		if opened && !fc.closingAll {
			fc.distribute()
			if dirty && rebalanceAt == nil && fc.unbalanced() {
				rebalanceAt = time.After(max(0, consumeRebalanceGap-time.Since(lastRebalance)))
			}
		}
		dirty = false
		if fc.closingAll && fc.live() == 0 {
			return finish(nil)
		}
		select {
		case f := <-frames:
			if errors.Is(f.err, io.EOF) {
				// The worker is done: every part pushes what it leased
				// and ends; the stream ends after the last.
				fc.closingAll = true
				for _, fg := range fc.groups {
					if fg.reopen != nil {
						fg.reopen.Stop()
						fg.reopen = nil
					}
					if fg.sub != nil {
						fg.sub.closeSend()
					}
				}
				continue
			}
			if f.err != nil {
				return finish(f.err)
			}
			if err := fc.frame(f.req); err != nil {
				return finish(err)
			}
		case ev := <-fc.events:
			dirty = true
			if err := fc.event(ev); err != nil {
				return finish(err)
			}
		case fg := <-fc.reopens:
			fg.reopen = nil
			if fg.sub == nil && !fc.closingAll {
				fc.start(fg)
			}
		case <-poke:
			dirty = true
			if watchAt == nil && (fc.orphans > 0 || len(fc.tracked) > 2*fc.maxCredit) {
				watchAt = time.After(max(0, consumeWatchEvery-time.Since(lastWatch)))
			}
		case <-rebalanceAt:
			rebalanceAt, lastRebalance = nil, time.Now()
			if wait := fc.rebalance(); wait > 0 {
				rebalanceAt = time.After(wait)
			}
		case <-watchAt:
			watchAt, lastWatch = nil, time.Now()
			if err := fc.watch(); err != nil {
				return finish(err)
			}
		case err := <-fc.sendErr:
			return finish(err)
		case <-host.ctx.Done():
			return finish(stopped())
		case <-ctx.Done():
			return finish(ctx.Err())
		}
	}
}

// allAnswered reports whether every group's first part has opened or
// ended.
func (fc *fanConsume) allAnswered() bool {
	for _, fg := range fc.groups {
		if !fg.answered {
			return false
		}
	}
	return true
}

// live counts the parts running.
func (fc *fanConsume) live() int {
	n := 0
	for _, fg := range fc.groups {
		if fg.sub != nil {
			n++
		}
	}
	return n
}

// left is the worker's credit left: what the pool and the parts hold.
func (fc *fanConsume) left() int {
	n := fc.pool
	for _, fg := range fc.groups {
		n += fg.credit
	}
	return n
}

// frame applies one worker frame after the open one, as the one-group
// server does.
func (fc *fanConsume) frame(req *raftqv1.ConsumeRequest) error {
	switch f := req.GetFrame().(type) {
	case *raftqv1.ConsumeRequest_Credit:
		left := fc.left()
		switch {
		case f.Credit < 1:
			return consumeInvalid(fmt.Sprintf("credit %d: a credit frame grants at least 1", f.Credit))
		case left+int(f.Credit) > fc.maxCredit:
			return apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_TOO_LARGE,
				fmt.Sprintf("consume: credit %d on top of %d left is over the limit of %d", f.Credit, left, fc.maxCredit))
		}
		fc.pool += int(f.Credit)
		return nil
	case *raftqv1.ConsumeRequest_Open:
		return consumeInvalid("the stream is already open")
	default:
		return consumeInvalid("a frame with neither open nor credit")
	}
}

// event applies what a part sent, or its end.
func (fc *fanConsume) event(ev fanEvent) error {
	s := ev.s
	fg := s.fg
	if ev.end {
		return fc.ended(fg, s, ev.err)
	}
	switch x := ev.m.GetFrame().(type) {
	case *raftqv1.ConsumeResponse_Opened:
		fg.answered, fg.failures = true, 0
		fg.max = fc.maxCredit
		if m := int(x.Opened.GetMaxCredit()); m > 0 && m < fg.max {
			fg.max = m
		}
	case *raftqv1.ConsumeResponse_Job:
		j := x.Job
		if fg.credit <= 0 {
			// Never: the part's server holds it to the credit granted,
			// which the router holds to the worker's. Pushing it would
			// break the worker's bound; its lease expires instead.
			fc.r.h.log.Error("consume: a group pushed a job beyond the credit granted; dropped", "group", fg.n.cfg.group, "job_id", j.GetId())
			return nil
		}
		fg.credit--
		fg.lastJob = time.Now()
		fc.tracked[j.GetId()] = &fanJob{fg: fg, sub: s, token: j.GetLeaseToken(), deadline: j.GetLeaseDeadline().AsTime()}
		return fc.push(ev.m)
	case *raftqv1.ConsumeResponse_Notice:
		n := x.Notice
		if t := fc.tracked[n.GetJobId()]; t != nil && t.token == n.GetLeaseToken() {
			switch n.GetKind() {
			case raftqv1.ConsumeNotice_KIND_CANCEL_REQUESTED:
				t.cancelSent = true
			case raftqv1.ConsumeNotice_KIND_LEASE_LOST:
				fc.untrack(n.GetJobId(), t)
			}
		}
		return fc.push(ev.m)
	}
	return nil
}

// ended accounts for part s of group fg ending with err: its unused
// credit returns to the pool, its jobs are watched here, and the group is
// opened again, unless the end refuses the stream itself.
func (fc *fanConsume) ended(fg *fanGroup, s *fanSub, err error) error {
	wasOpen := fg.max > 0
	if err != nil && fc.ctx.Err() == nil {
		fc.r.h.log.Info("consume: a group's part of a stream ended; opening it again", "group", fg.n.cfg.group, "err", err)
	}
	fg.answered = true
	fc.pool += fg.credit
	fg.sub, fg.credit, fg.max, fg.closing = nil, 0, 0, false
	for _, t := range fc.tracked {
		if t.sub == s {
			t.sub = nil
			fc.orphans++
		}
	}
	if fc.closingAll || fc.ctx.Err() != nil {
		return nil
	}
	if err != nil && !partRetryable(err) {
		// A refusal (PermissionDenied, InvalidArgument, the stream
		// caps) is the stream's: a part opened again would get the same.
		return err
	}
	if wasOpen {
		fg.failures = 0
		fc.start(fg)
		return nil
	}
	fg.failures++
	wait := min(consumePartBackoff<<min(fg.failures-1, 5), consumePartBackoffMax)
	fg.reopen = time.AfterFunc(wait, func() {
		select {
		case fc.reopens <- fg:
		case <-fc.ctx.Done():
		}
	})
	return nil
}

// partRetryable reports whether a part that ended with err is opened
// again: the group's leader moved or is not known yet, or the relay to
// it broke (nil: the router closed it).
func partRetryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.Unknown, codes.Internal, codes.Aborted:
		return true
	}
	return false
}

// untrack forgets a tracked job.
func (fc *fanConsume) untrack(id string, t *fanJob) {
	if t.sub == nil {
		fc.orphans--
	}
	delete(fc.tracked, id)
}

// distribute grants the pool to the parts: one to each part holding
// none, in the order below, then each up to an even share, then the rest
// to the part first in it; the
// order is the parts that delivered most recently first, the others
// rotating from stream to grant.
func (fc *fanConsume) distribute() {
	if fc.pool <= 0 {
		return
	}
	var order []*fanGroup
	for _, fg := range fc.groups {
		if fg.eligible() {
			order = append(order, fg)
		}
	}
	if len(order) == 0 {
		return
	}
	fc.rot++
	k := fc.rot % len(order)
	order = append(order[k:], order[:k]...)
	slices.SortStableFunc(order, func(a, b *fanGroup) int { return b.lastJob.Compare(a.lastJob) })
	if fc.pool < len(order) {
		// Not enough for every part without credit: those with jobs
		// ready first.
		slices.SortStableFunc(order, func(a, b *fanGroup) int {
			return cmp.Compare(b2i(a.credit == 0 && fc.ready(a)), b2i(b.credit == 0 && fc.ready(b))) * -1
		})
	}
	for _, fg := range order {
		if fc.pool == 0 {
			return
		}
		if fg.credit == 0 {
			fc.grant(fg, 1)
		}
	}
	// Then each part up to an even share of what the parts will hold, in
	// the same order: returned credit all to the last deliverer would
	// pile up in one part, leaving the others one credit each, and their
	// groups' jobs one per round trip (4 partitions drained at ~500/s).
	held := fc.pool
	for _, fg := range order {
		held += fg.credit
	}
	share := (held + len(order) - 1) / len(order)
	for _, fg := range order {
		if fc.pool == 0 {
			return
		}
		if k := min(fc.pool, share-fg.credit, fg.max-fg.credit); k > 0 {
			fc.grant(fg, k)
		}
	}
	for _, fg := range order {
		if fc.pool == 0 {
			return
		}
		if k := min(fc.pool, fg.max-fg.credit); k > 0 {
			fc.grant(fg, k)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// grant moves k of the pool to fg's part.
func (fc *fanConsume) grant(fg *fanGroup, k int) {
	fc.pool -= k
	if fg.credit == 0 {
		fg.lastLent = time.Now()
	}
	fg.credit += k
	fg.sub.addCredit(k)
}

// ready reports whether this node's replica of fg's group shows a job
// ready in one of its queues that is not paused: a hint (the replica can
// lag; a ready job may be held back by a queue's limits).
//
// A group this node does not run (Config.Replicas) shows nothing: its
// part gets credit by the even share and the worker's frames, never by a
// close of another part.
func (fc *fanConsume) ready(fg *fanGroup) bool {
	if fg.n.remote {
		return false
	}
	for _, qs := range fg.n.fsm.Stats(fg.queues) {
		if !qs.Paused && qs.Counts[fsm.StateReady] > 0 {
			return true
		}
	}
	return false
}

// share is a part's fair share of the credit the parts hold: the credit
// they hold over the parts that may hold any, at least 1.
func (fc *fanConsume) share() int {
	held, parts := 0, 0
	for _, fg := range fc.groups {
		if fg.eligible() {
			held += fg.credit
			parts++
		}
	}
	return max(1, held/max(1, parts))
}

// unbalanced reports whether credit might have to move: all of it is
// with the parts, some part holds less than its share and some other
// holds more.
func (fc *fanConsume) unbalanced() bool {
	if fc.pool > 0 {
		return false
	}
	share := fc.share()
	below, above := false, false
	for _, fg := range fc.groups {
		if !fg.eligible() {
			continue
		}
		if fg.credit < share {
			below = true
		} else if fg.credit > share || fg.credit > 0 {
			above = true
		}
	}
	return below && above
}

// rebalance closes, for each part below its share of the credit (share)
// whose group has jobs ready, a part holding credit that is idle. A part
// left with one credit while another holds the rest must count as short
// of credit, or a group that still has a backlog when the others run dry
// is served one job per round trip (seen in make bench-groups: a
// partitioned queue's tail drained at ~150 jobs/s). Idle: it delivered nothing since
// it last delivered or got credit for consumeIdleMin when its group has
// nothing ready, for crossGroupSlice when it has (its queue may be held
// back by its limits). Its credit comes back
// when it ends. It returns when to look again if a part needs credit and
// every holder delivered recently (0: no need).
func (fc *fanConsume) rebalance() time.Duration {
	if fc.pool > 0 {
		return 0
	}
	var needy, donors []*fanGroup
	share := fc.share()
	for _, fg := range fc.groups {
		switch {
		case !fg.eligible():
		case fg.credit < share && fc.ready(fg):
			needy = append(needy, fg)
		case fg.credit > 0:
			donors = append(donors, fg)
		}
	}
	// Credit already on its way back from parts closed before serves the
	// first of them.
	for _, fg := range fc.groups {
		if fg.closing {
			needy = needy[min(fg.credit, len(needy)):]
		}
	}
	if len(needy) == 0 || len(donors) == 0 {
		return 0
	}
	slices.SortFunc(donors, func(a, b *fanGroup) int { return a.lastJob.Compare(b.lastJob) })
	now := time.Now()
	var wait time.Duration
	for _, d := range donors {
		if len(needy) == 0 {
			break
		}
		busy := d.lastJob
		if d.lastLent.After(busy) {
			busy = d.lastLent
		}
		need := consumeIdleMin
		if fc.ready(d) {
			need = crossGroupSlice
		}
		if idle := now.Sub(busy); idle < need {
			if w := need - idle; wait == 0 || w < wait {
				wait = w
			}
			continue
		}
		d.closing = true
		d.sub.closeSend()
		needy = needy[min(d.credit, len(needy)):]
	}
	if len(needy) == 0 {
		return 0
	}
	return wait
}

// watch looks at the jobs the router watches (their part ended) on this
// node's replica of their group, and pushes a notice for each that was
// cancelled or whose lease ended other than by the worker's settle, as
// the one-group server does. With many jobs tracked it also forgets
// those whose leases ended (their parts said what they had to).
func (fc *fanConsume) watch() error {
	prune := len(fc.tracked) > 2*fc.maxCredit
	// One read of each group's replica for all its jobs (not a read
	// each), and no read held open while a push waits for the worker.
	byGroup := map[*Node][]string{}
	for id, t := range fc.tracked {
		if t.sub == nil || prune {
			byGroup[t.fg.n] = append(byGroup[t.fg.n], id)
		}
	}
	for gn, ids := range byGroup {
		if gn.remote {
			// No replica here to watch them on: the jobs of an ended
			// part are forgotten (their leases still fence their acks;
			// the worker learns of a cancel when it settles).
			for _, id := range ids {
				if t := fc.tracked[id]; t != nil && t.sub == nil {
					delete(fc.tracked, id)
				}
			}
			continue
		}
		if err := fc.watchGroup(gn, ids); err != nil {
			return err
		}
	}
	return nil
}

// watchGroup is watch for the tracked jobs ids of one group, read from
// gn, this node's replica of it.
func (fc *fanConsume) watchGroup(gn *Node, ids []string) error {
	for i, jp := range gn.fsm.GetMany(ids) {
		id, t := ids[i], fc.tracked[ids[i]]
		if t == nil {
			continue // untracked by a push's side effect
		}
		ok := jp != nil
		var j fsm.Job
		if ok {
			j = *jp
		}
		var kind raftqv1.ConsumeNotice_Kind
		switch {
		case !ok || j.LeaseToken < t.token:
			// Not on the replica yet (it lags), or gone: forget it once
			// its lease would have ended anyway.
			if time.Now().After(t.deadline) {
				fc.untrack(id, t)
			}
			continue
		case j.State == fsm.StateLeased && j.LeaseToken == t.token:
			if t.sub != nil || !j.CancelRequested || t.cancelSent {
				continue
			}
			t.cancelSent = true
			kind = raftqv1.ConsumeNotice_KIND_CANCEL_REQUESTED
		case j.LeaseToken == t.token && (j.State == fsm.StateSucceeded ||
			(j.LastError != leaseExpiredError && j.LastError != fsm.StartToCloseError)):
			fc.untrack(id, t)
			continue
		default:
			live := t.sub != nil
			fc.untrack(id, t)
			if live {
				continue // its part tells
			}
			kind = raftqv1.ConsumeNotice_KIND_LEASE_LOST
		}
		if err := fc.push(&raftqv1.ConsumeResponse{Frame: &raftqv1.ConsumeResponse_Notice{
			Notice: &raftqv1.ConsumeNotice{JobId: id, LeaseToken: t.token, Kind: kind}}}); err != nil {
			return err
		}
	}
	return nil
}

// push queues a frame for the worker, waiting while the worker does not
// read (which holds the parts back too), but not past the stream's end or
// the host's.
func (fc *fanConsume) push(f *raftqv1.ConsumeResponse) error {
	select {
	case fc.out <- f:
		return nil
	default:
	}
	select {
	case fc.out <- f:
		return nil
	case err := <-fc.sendErr:
		return err
	case <-fc.ctx.Done():
		return fc.ctx.Err()
	case <-fc.r.h.ctx.Done():
		id, addr := fc.r.h.leader()
		return fc.r.h.notLeader(id, addr)
	}
}

// start opens a part for fg, served by consumeIn as any Consume stream of
// the group.
func (fc *fanConsume) start(fg *fanGroup) {
	sctx, cancel := context.WithCancel(fc.ctx)
	s := &fanSub{BidiStreamingServer: fc.st, fg: fg, fc: fc, ctx: sctx, cancel: cancel,
		first: &raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Open{Open: fg.open}},
		wake:  make(chan struct{}, 1)}
	fg.sub = s
	fc.wg.Add(1)
	go func() {
		defer fc.wg.Done()
		err := consumeIn(fg.n, s)
		// No frame of the part reaches the loop after its end: Send
		// refuses from here on, and one under way has returned.
		s.cancel()
		s.sendMu.Lock()
		s.ended = true
		s.sendMu.Unlock()
		select {
		case fc.events <- fanEvent{s: s, end: true, err: err}:
		case <-fc.ctx.Done():
		}
	}()
}

// errPartEnded is what a part's Send answers after its end.
var errPartEnded = errors.New("consume: the group's part of the stream ended")

// fanSub is one group's part of a fanned-in Consume stream: what the
// group's handler (or the relay to its leader) sees as its stream. Its
// frames are the group's open frame, then the credit the router grants
// (coalesced), then io.EOF once the router closes it.
type fanSub struct {
	grpc.BidiStreamingServer[raftqv1.ConsumeRequest, raftqv1.ConsumeResponse]
	fg     *fanGroup
	fc     *fanConsume
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}

	mu     sync.Mutex
	first  *raftqv1.ConsumeRequest
	credit int
	closed bool

	sendMu sync.Mutex
	ended  bool
}

func (s *fanSub) Context() context.Context { return s.ctx }

// SetHeader, SendHeader and SetTrailer keep a part's metadata off the
// worker's stream.
func (s *fanSub) SetHeader(metadata.MD) error  { return nil }
func (s *fanSub) SendHeader(metadata.MD) error { return nil }
func (s *fanSub) SetTrailer(metadata.MD)       {}

// addCredit queues a credit frame of k more (added to one not yet read).
func (s *fanSub) addCredit(k int) {
	s.mu.Lock()
	s.credit += k
	s.mu.Unlock()
	s.poke()
}

// closeSend ends the part's frames: its server pushes what it leased and
// ends.
func (s *fanSub) closeSend() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.poke()
}

func (s *fanSub) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *fanSub) Recv() (*raftqv1.ConsumeRequest, error) {
	for {
		s.mu.Lock()
		switch {
		case s.first != nil:
			f := s.first
			s.first = nil
			s.mu.Unlock()
			return f, nil
		case s.closed:
			// Credit not handed over yet goes back with the rest of the
			// part's when it ends.
			s.mu.Unlock()
			return nil, io.EOF
		case s.credit > 0:
			k := s.credit
			s.credit = 0
			s.mu.Unlock()
			return &raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Credit{Credit: int32(k)}}, nil
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		}
	}
}

// Send hands the group's frame to the run loop.
func (s *fanSub) Send(m *raftqv1.ConsumeResponse) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.ended {
		return errPartEnded
	}
	select {
	case s.fc.events <- fanEvent{s: s, m: m}:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}
