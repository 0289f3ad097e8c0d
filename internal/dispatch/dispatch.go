// Package dispatch is the leader-only job dispatcher: it parks long-poll
// fetches, picks ready jobs for them from the FSM, leases those jobs through
// Raft, and proposes the time-driven commands (promotion of scheduled jobs,
// lease expiry, purge of old terminal jobs).
//
// It lives only on the leader, is built from FSM state when leadership is
// won (after a Barrier, so the FSM holds everything committed), and is
// thrown away when leadership is lost. It holds no state that matters after
// that: parked fetches fail with not-leader and clients retry elsewhere.
//
// One goroutine owns all mutable dispatcher state, so there are no locks:
// fetches, FSM change signals, lease outcomes and timers are events on its
// loop. Jobs proposed for a lease but not yet committed are "in flight" and
// skipped by later matches, so two waiters never race for the same job.
//
// Fair dispatch: a queue's ready jobs are picked by fsm.PickReady,
// strictly by priority, then round-robin across concurrency keys (jobs
// without a key form one more key), resuming after the key the queue served
// last; FIFO holds within (queue, priority, key), not across keys. A
// queue's MaxInFlightPerKey caps each key's leased jobs, counted from the
// FSM's leased-by-key index plus this dispatcher's in-flight leases: a new
// leader recomputes it from FSM state. RatePerKey gives each key a token
// bucket on the leader's clock (a new leader starts them full).
package dispatch

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/proposer"
)

// FSM is what the dispatcher reads; *fsm.FSM implements it.
type FSM interface {
	Changed() <-chan struct{}
	ReadyJobs(queue string, max int, skip func(id string) bool) []string
	// PickReady picks ready jobs fairly across concurrency keys, within a
	// per-key cap.
	PickReady(queue string, p fsm.ReadyPick) []fsm.ReadyJob
	NextWakeup() (int64, bool)
	// NextTimeout is the earliest schedule-to-start or start-to-close
	// deadline (ExpireTimeouts).
	NextTimeout() (int64, bool)
	// Stats gives the queues' job counts; the dispatcher reads the leased
	// count of queues that have a concurrency cap.
	Stats(queues []string) []fsm.QueueStats
}

// QueueLimit is one queue's dispatch limits; zero fields mean unlimited.
type QueueLimit struct {
	// MaxInFlight caps the queue's leased jobs (committed leases plus
	// leases being proposed), across every worker: only the leader leases,
	// so one dispatcher sees them all.
	MaxInFlight int
	// RatePerSec limits how many of the queue's jobs are leased per
	// second, with a bucket of Burst (default: the rate, at least 1).
	RatePerSec float64
	Burst      int
	// MaxInFlightPerKey caps the leased jobs of each concurrency key of
	// the queue (committed leases plus leases being proposed); jobs
	// without a key are not capped by it.
	MaxInFlightPerKey int
	// RatePerKey limits how many jobs of each concurrency key are leased
	// per second (0: unlimited), with a bucket of the rate (at least 1).
	// Jobs without a key are not limited by it.
	RatePerKey float64
}

// Limits supplies each queue's limits (live configuration). Changed
// returns a channel closed when they may have changed, so a raised cap
// takes effect at once.
type Limits interface {
	QueueLimit(queue string) QueueLimit
	Changed() <-chan struct{}
}

// Proposer is what the dispatcher writes through; *proposer.Proposer
// implements it.
type Proposer interface {
	Submit(cmd *fsmpb.Command, done func(proposer.Response))
}

// Options configure a dispatcher. Zero values take defaults.
type Options struct {
	// Clock is the leader's clock (default time.Now). Tests inject one.
	Clock func() time.Time
	// Retention: terminal jobs older than this are purged (default 24h).
	Retention time.Duration
	// PurgeInterval between purge proposals (default 1m).
	PurgeInterval time.Duration
	// TickLimit bounds the jobs one promote or expire command touches, so
	// entries stay small (default 4096).
	TickLimit int32
	// Limits, when set, caps and rate-limits leases per queue.
	Limits Limits
}

// FetchRequest is one long-poll.
type FetchRequest struct {
	Queues []string
	Max    int
	// Wait is how long to park when nothing is ready; zero answers at once.
	Wait          time.Duration
	WorkerID      string
	LeaseDuration time.Duration
	// Weights, when set (one per queue, each at least 1), ask for weighted
	// selection instead of strict preference: each job slot goes to a
	// queue with jobs ready, picked by smooth weighted round-robin.
	Weights []int
}

type waiter struct {
	// mu and gone make the hand-off of leased jobs atomic with the
	// caller giving up: jobs go either to the caller or back to ready.
	mu   sync.Mutex
	gone bool

	req      FetchRequest
	deadline time.Time
	ctx      context.Context
	resp     chan fetchResult
	leasing  bool
}

type fetchResult struct {
	jobs []fsm.Job
	err  error
}

type leaseOutcome struct {
	w   *waiter
	ids []string
	r   proposer.Response
}

// Dispatcher is created per leadership term. Start with New, end with Stop.
type Dispatcher struct {
	fsm  FSM
	prop Proposer
	opts Options

	newWaiter chan *waiter
	leaseDone chan leaseOutcome
	tickDone  chan struct{}
	stop      chan struct{}
	stopped   chan struct{}

	// Owned by the loop goroutine.
	waiters     []*waiter
	inflight    map[string]queueKey // job id → its queue and key, leases being proposed
	inflightQ   map[string]int      // queue → jobs in inflight
	inflightK   map[queueKey]int    // (queue, key) → jobs in inflight
	lastKey     map[string]string   // queue → the concurrency key served last
	limiters    map[string]*rate.Limiter
	keyLim      map[queueKey]*rate.Limiter // per-key rate limiters
	nextToken   time.Time                  // when a rate-limited queue with ready jobs gets a token
	tickPending bool
	nextPurge   time.Time
	// wrr is the smooth weighted round-robin state of each weighted queue
	// set (keyed by queues and weights), shared by the fetches that name
	// it, so the proportion holds across small fetches and workers.
	wrr map[string][]int
}

// maxWRRSets bounds wrr; past it the states start over (a proportion is
// only approximate for a moment).
const maxWRRSets = 1024

// queueKey is a (queue, concurrency key) pair.
type queueKey struct{ queue, key string }

// New starts a dispatcher.
func New(f FSM, p Proposer, opts Options) *Dispatcher {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Retention <= 0 {
		opts.Retention = 24 * time.Hour
	}
	if opts.PurgeInterval <= 0 {
		opts.PurgeInterval = time.Minute
	}
	if opts.TickLimit <= 0 {
		opts.TickLimit = 4096
	}
	d := &Dispatcher{
		fsm:       f,
		prop:      p,
		opts:      opts,
		newWaiter: make(chan *waiter),
		leaseDone: make(chan leaseOutcome, 64),
		tickDone:  make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
		inflight:  make(map[string]queueKey),
		inflightQ: make(map[string]int),
		inflightK: make(map[queueKey]int),
		lastKey:   make(map[string]string),
		limiters:  make(map[string]*rate.Limiter),
		keyLim:    make(map[queueKey]*rate.Limiter),
		wrr:       make(map[string][]int),
	}
	d.nextPurge = opts.Clock().Add(opts.PurgeInterval)
	go d.loop()
	return d
}

// Stop ends the dispatcher; parked fetches fail with apierr.ErrNotLeader.
func (d *Dispatcher) Stop() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.stopped
}

// Fetch leases up to req.Max ready jobs from req.Queues (in preference
// order), waiting up to req.Wait for some. It returns an empty slice when the
// wait passes with nothing ready, apierr.ErrNotLeader when the dispatcher
// stops (leadership lost), and ctx's error when the caller goes away.
func (d *Dispatcher) Fetch(ctx context.Context, req FetchRequest) ([]fsm.Job, error) {
	w := &waiter{
		req:      req,
		deadline: d.opts.Clock().Add(req.Wait),
		ctx:      ctx,
		resp:     make(chan fetchResult, 1),
	}
	select {
	case d.newWaiter <- w:
	case <-d.stop:
		return nil, apierr.ErrNotLeader
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-w.resp:
		return r.jobs, r.err
	case <-ctx.Done():
		// Mark the waiter gone so a lease committing after this is handed
		// back by answer; jobs answered already but not taken go back here.
		w.mu.Lock()
		w.gone = true
		var r fetchResult
		select {
		case r = <-w.resp:
		default:
		}
		w.mu.Unlock()
		if len(r.jobs) > 0 {
			d.release(r.jobs)
		}
		return nil, ctx.Err()
	}
}

func (d *Dispatcher) loop() {
	defer close(d.stopped)
	changed := d.fsm.Changed()
	var limitsChanged <-chan struct{}
	if d.opts.Limits != nil {
		limitsChanged = d.opts.Limits.Changed()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.maybeTick()
		d.resetTimer(timer)
		select {
		case <-d.stop:
			for _, w := range d.waiters {
				w.resp <- fetchResult{err: apierr.ErrNotLeader}
			}
			d.waiters = nil
			return
		case w := <-d.newWaiter:
			d.waiters = append(d.waiters, w)
		case <-changed:
			changed = d.fsm.Changed()
		case <-limitsChanged:
			limitsChanged = d.opts.Limits.Changed()
		case o := <-d.leaseDone:
			d.leased(o)
		case <-d.tickDone:
			d.tickPending = false
		case <-timer.C:
		}
		// Match before expiring, so a zero-wait fetch still gets what is
		// ready now.
		d.match()
		d.expireWaiters()
	}
}

// match gives ready jobs to parked waiters, oldest waiter first, within
// each queue's cap and rate.
func (d *Dispatcher) match() {
	skip := func(id string) bool { _, ok := d.inflight[id]; return ok }
	now := d.opts.Clock()
	d.nextToken = time.Time{}
	for _, w := range d.waiters {
		if w.leasing || w.ctx.Err() != nil {
			continue
		}
		var ids []string
		take := func(q string, want int) int {
			room, lim := d.room(q, now, skip)
			if room == 0 {
				return 0
			}
			if room > 0 && want > room {
				want = room
			}
			var ql QueueLimit
			if d.opts.Limits != nil {
				ql = d.opts.Limits.QueueLimit(q)
			}
			pick := fsm.ReadyPick{Max: want, After: d.lastKey[q], Skip: skip, KeyCap: ql.MaxInFlightPerKey,
				InFlight: func(key string) int { return d.inflightK[queueKey{q, key}] }}
			if ql.RatePerKey > 0 {
				pick.KeyRoom = func(key string) int { return d.keyRoom(queueKey{q, key}, ql.RatePerKey, now) }
			}
			got := d.fsm.PickReady(q, pick)
			if lim != nil && len(got) > 0 {
				lim.AllowN(now, len(got))
			}
			for _, r := range got {
				qk := queueKey{q, r.Key}
				if kl := d.keyLim[qk]; kl != nil && ql.RatePerKey > 0 && r.Key != "" {
					kl.AllowN(now, 1)
				}
				d.inflight[r.ID] = qk
				d.inflightQ[q]++
				d.inflightK[qk]++
				ids = append(ids, r.ID)
			}
			if len(got) > 0 {
				d.lastKey[q] = got[len(got)-1].Key
			}
			return len(got)
		}
		if len(w.req.Weights) == len(w.req.Queues) && len(w.req.Weights) > 0 {
			d.weighted(w.req, take)
		} else {
			for _, q := range w.req.Queues {
				if len(ids) >= w.req.Max {
					break
				}
				take(q, w.req.Max-len(ids))
			}
		}
		if len(ids) == 0 {
			continue
		}
		w.leasing = true
		items := make([]*fsmpb.LeaseItem, len(ids))
		for i, id := range ids {
			items[i] = &fsmpb.LeaseItem{JobId: id, LeaseDuration: int64(w.req.LeaseDuration)}
		}
		cmd := &fsmpb.Command{
			Type: fsmpb.CommandType_COMMAND_TYPE_LEASE,
			Body: &fsmpb.Command_Lease{Lease: &fsmpb.Lease{WorkerId: w.req.WorkerID, Items: items}},
		}
		d.prop.Submit(cmd, func(r proposer.Response) {
			// Never block the caller: on a stopped proposer it is this
			// very loop.
			go func() {
				select {
				case d.leaseDone <- leaseOutcome{w: w, ids: ids, r: r}:
				case <-d.stop:
				}
			}()
		})
	}
}

// weighted fills a fetch one job at a time, each from the queue smooth
// weighted round-robin (nginx's) picks among the queues that still have
// jobs to give: every queue's current weight grows by its weight, the
// largest is picked and loses the sum. Over any run of picks with the
// same queues available, each queue gets its share of jobs within one.
// The state is the dispatcher's, not the FSM's: it only orders leases.
func (d *Dispatcher) weighted(req FetchRequest, take func(q string, want int) int) {
	key := fmt.Sprint(req.Queues, req.Weights)
	cur, ok := d.wrr[key]
	if !ok {
		if len(d.wrr) >= maxWRRSets {
			clear(d.wrr)
		}
		cur = make([]int, len(req.Queues))
		d.wrr[key] = cur
	}
	empty := make([]bool, len(req.Queues))
	for n := 0; n < req.Max; {
		best, total := -1, 0
		for i, wt := range req.Weights {
			if empty[i] {
				continue
			}
			cur[i] += wt
			total += wt
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		if best < 0 {
			return
		}
		cur[best] -= total
		if take(req.Queues[best], 1) == 0 {
			// Nothing to give now: out of this fetch's rotation, with its
			// turn handed back so an empty queue does not lose its share.
			cur[best] += total - req.Weights[best]
			empty[best] = true
			for i := range cur {
				if i != best && !empty[i] {
					cur[i] -= req.Weights[i]
				}
			}
			continue
		}
		n++
	}
}

// leased handles a committed (or failed) lease: the waiter gets the jobs
// that were leased; if none were (all taken by a cancel, say), it waits on.
func (d *Dispatcher) leased(o leaseOutcome) {
	for _, id := range o.ids {
		if qk, ok := d.inflight[id]; ok {
			if d.inflightQ[qk.queue]--; d.inflightQ[qk.queue] <= 0 {
				delete(d.inflightQ, qk.queue)
			}
			if d.inflightK[qk]--; d.inflightK[qk] <= 0 {
				delete(d.inflightK, qk)
			}
		}
		delete(d.inflight, id)
	}
	o.w.leasing = false
	if o.r.Err != nil {
		d.answer(o.w, fetchResult{err: o.r.Err})
		return
	}
	var jobs []fsm.Job
	for _, it := range o.r.Result.Items {
		if it.Err == nil && it.Job != nil {
			jobs = append(jobs, *it.Job)
		}
	}
	if len(jobs) > 0 {
		d.answer(o.w, fetchResult{jobs: jobs})
	}
}

// release proposes that jobs leased to nobody go back to ready, with the
// attempt undone: they never reached a worker.
func (d *Dispatcher) release(jobs []fsm.Job) {
	items := make([]*fsmpb.NackItem, len(jobs))
	for i, j := range jobs {
		items[i] = &fsmpb.NackItem{JobId: j.ID, Token: j.LeaseToken, RetryAfter: -1, Release: true}
	}
	d.prop.Submit(&fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_NACK,
		Body: &fsmpb.Command_Nack{Nack: &fsmpb.Nack{Items: items}},
	}, func(proposer.Response) {})
}

// room says how many of queue q's jobs may be leased now (-1: no limit),
// and returns the queue's rate limiter (nil: none) to charge. A
// rate-limited queue with ready jobs but no token sets nextToken, so the
// loop wakes when one is due.
func (d *Dispatcher) room(q string, now time.Time, skip func(string) bool) (int, *rate.Limiter) {
	if d.opts.Limits == nil {
		return -1, nil
	}
	l := d.opts.Limits.QueueLimit(q)
	room := -1
	if l.MaxInFlight > 0 {
		var leased int64
		if st := d.fsm.Stats([]string{q}); len(st) == 1 {
			leased = st[0].Counts[fsm.StateLeased]
		}
		room = l.MaxInFlight - int(leased) - d.inflightQ[q]
		if room <= 0 {
			return 0, nil
		}
	}
	if l.RatePerSec <= 0 {
		delete(d.limiters, q)
		return room, nil
	}
	burst := l.Burst
	if burst <= 0 {
		burst = int(math.Max(1, math.Ceil(l.RatePerSec)))
	}
	lim, ok := d.limiters[q]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(l.RatePerSec), burst)
		d.limiters[q] = lim
	} else if lim.Limit() != rate.Limit(l.RatePerSec) || lim.Burst() != burst {
		lim.SetLimitAt(now, rate.Limit(l.RatePerSec))
		lim.SetBurstAt(now, burst)
	}
	tokens := lim.TokensAt(now)
	if tokens < 1 {
		if len(d.fsm.ReadyJobs(q, 1, skip)) > 0 {
			at := now.Add(time.Duration((1 - tokens) / l.RatePerSec * float64(time.Second)))
			if d.nextToken.IsZero() || at.Before(d.nextToken) {
				d.nextToken = at
			}
		}
		return 0, nil
	}
	if n := int(math.Floor(tokens)); room < 0 || n < room {
		room = n
	}
	return room, lim
}

// keyRoom is how many jobs of (queue, key) its rate allows now: the whole
// tokens in its bucket. A key with no token (it has ready jobs: PickReady
// only asks for those) sets nextToken, so the loop wakes when one is due.
func (d *Dispatcher) keyRoom(qk queueKey, perSec float64, now time.Time) int {
	burst := int(math.Max(1, math.Ceil(perSec)))
	lim, ok := d.keyLim[qk]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(perSec), burst)
		d.keyLim[qk] = lim
	} else if lim.Limit() != rate.Limit(perSec) || lim.Burst() != burst {
		lim.SetLimitAt(now, rate.Limit(perSec))
		lim.SetBurstAt(now, burst)
	}
	tokens := lim.TokensAt(now)
	if tokens < 1 {
		at := now.Add(time.Duration((1 - tokens) / perSec * float64(time.Second)))
		if d.nextToken.IsZero() || at.Before(d.nextToken) {
			d.nextToken = at
		}
		return 0
	}
	return int(math.Floor(tokens))
}

// pruneKeyLimiters forgets per-key limiters whose bucket is full again: a
// new one would behave the same, and tenants come and go.
func (d *Dispatcher) pruneKeyLimiters(now time.Time) {
	for qk, lim := range d.keyLim {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(d.keyLim, qk)
		}
	}
}

// answer hands r to w's caller, or, when the caller has left (its lease
// committed after it gave up), hands the jobs back so they are not
// stranded until their leases expire.
func (d *Dispatcher) answer(w *waiter, r fetchResult) {
	w.mu.Lock()
	gone := w.gone
	if !gone {
		w.resp <- r // buffered; answered once
	}
	w.mu.Unlock()
	if gone && len(r.jobs) > 0 {
		d.release(r.jobs)
	}
	for i, x := range d.waiters {
		if x == w {
			d.waiters = append(d.waiters[:i], d.waiters[i+1:]...)
			break
		}
	}
}

// expireWaiters answers waiters whose wait ended with nothing, and drops
// those whose caller left.
func (d *Dispatcher) expireWaiters() {
	now := d.opts.Clock()
	kept := d.waiters[:0]
	for _, w := range d.waiters {
		switch {
		case w.leasing:
			kept = append(kept, w)
		case w.ctx.Err() != nil:
			// Caller gone; nothing to answer.
		case !now.Before(w.deadline):
			w.resp <- fetchResult{jobs: nil}
		default:
			kept = append(kept, w)
		}
	}
	for i := len(kept); i < len(d.waiters); i++ {
		d.waiters[i] = nil
	}
	d.waiters = kept
}

// maybeTick proposes promotion of due scheduled jobs and expiry of due
// leases, and the periodic purge; at most one such entry is in flight.
func (d *Dispatcher) maybeTick() {
	if d.tickPending {
		return
	}
	now := d.opts.Clock()
	var cmds []*fsmpb.Command
	if at, ok := d.fsm.NextWakeup(); ok && at <= now.UnixNano() {
		cmds = append(cmds,
			&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PROMOTE,
				Body: &fsmpb.Command_Promote{Promote: &fsmpb.Promote{Limit: d.opts.TickLimit}}},
			&fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE_LEASES,
				Body: &fsmpb.Command_ExpireLeases{ExpireLeases: &fsmpb.ExpireLeases{Limit: d.opts.TickLimit}}})
		if at, ok := d.fsm.NextTimeout(); ok && at <= now.UnixNano() {
			cmds = append(cmds, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_EXPIRE_TIMEOUTS,
				Body: &fsmpb.Command_ExpireTimeouts{ExpireTimeouts: &fsmpb.ExpireTimeouts{Limit: d.opts.TickLimit}}})
		}
	}
	if !now.Before(d.nextPurge) {
		d.nextPurge = now.Add(d.opts.PurgeInterval)
		d.pruneKeyLimiters(now)
		cmds = append(cmds, &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_PURGE,
			Body: &fsmpb.Command_Purge{Purge: &fsmpb.Purge{
				Before: now.Add(-d.opts.Retention).UnixNano(), Limit: d.opts.TickLimit}}})
	}
	if len(cmds) == 0 {
		return
	}
	d.tickPending = true
	left := new(atomic.Int32)
	left.Store(int32(len(cmds)))
	for _, c := range cmds {
		d.prop.Submit(c, func(proposer.Response) {
			if left.Add(-1) == 0 {
				// tickDone has room: only one tick is ever pending.
				d.tickDone <- struct{}{}
			}
		})
	}
}

// resetTimer arms the timer for the next thing that needs time to pass: a
// waiter's deadline, a scheduled job or lease coming due, or the purge.
func (d *Dispatcher) resetTimer(t *time.Timer) {
	now := d.opts.Clock()
	next := d.nextPurge
	for _, w := range d.waiters {
		if !w.leasing && w.deadline.Before(next) {
			next = w.deadline
		}
	}
	if !d.nextToken.IsZero() && d.nextToken.Before(next) {
		next = d.nextToken
	}
	if !d.tickPending {
		if at, ok := d.fsm.NextWakeup(); ok {
			if wt := time.Unix(0, at); wt.Before(next) {
				next = wt
			}
		}
	}
	wait := next.Sub(now)
	if wait < time.Millisecond {
		wait = time.Millisecond
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(wait)
}
