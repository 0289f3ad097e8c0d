package brokerd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/raftq/raftq/internal/dispatch"
)

// Leadership: everything a node does only while it leads, in one place
// (after Nomad's establishLeadership/revokeLeadership). A term of
// leadership runs in three steps:
//
//  1. Barrier: the FSM must hold every entry committed by earlier leaders
//     before anything reads it as the leader's state. It is retried until
//     DefaultEstablishTimeout; a node that cannot finish it (its FSM is
//     stuck, e.g. waiting for disk space) gives leadership to a peer
//     rather than lead without serving.
//  2. Establish the duties in a fixed order — dispatcher, scheduler, disk
//     hand-off, leader health (after which the node is "leader ready"),
//     then the duties added at run time (AddLeaderDuty: the etcd leader
//     hint) — each with its own context derived from the node's.
//  3. Revoke, when leadership is lost, when establishing fails half way,
//     or at shutdown: the duties in reverse order, each one's context
//     cancelled and its loop waited for. Revoke is idempotent, and no duty
//     waits on a peer longer than its own short deadline, so shutdown does
//     not hang on an unreachable one.

// DefaultEstablishTimeout bounds a new leader's Barrier (step 1 above).
const DefaultEstablishTimeout = 15 * time.Second

// errEstablish marks a term that could not be established; errRevoked a
// term revoked while it was being established.
var (
	errEstablish = errors.New("leadership not established")
	errRevoked   = errors.New("leadership revoked while establishing")
)

// A duty is one thing a leader does for its term: establish sets it up
// (it must not block), run is its loop (it returns when ctx ends), revoke
// undoes establish. Any of them may be nil.
type duty struct {
	name      string
	establish func(ctx context.Context) error
	run       func(ctx context.Context)
	revoke    func()
}

// activeDuty is a duty established for one term.
type activeDuty struct {
	d      *duty
	cancel context.CancelFunc
	done   chan struct{} // closed when run returned (at once without run)
}

// term is one term of leadership as this node runs it.
type term struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when lead returned
	ready  bool          // every duty established (under leadership.mu)
	active []*activeDuty // established duties in order (under leadership.mu)
}

// leadership runs the node's leader duties for each term it leads.
type leadership struct {
	n       *Node
	timeout time.Duration // the Barrier's bound (Testing.EstablishTimeout)

	mu     sync.Mutex
	duties []*duty // establish order: built-ins, then AddLeaderDuty's
	term   *term   // the current term; nil while not leading

	// revokeMu serializes revokes: a second caller (shutdown and the
	// watcher both revoke) returns only once the first has finished.
	revokeMu sync.Mutex
	ready    atomic.Bool // set by the health duty: the node leads and serves
}

func newLeadership(n *Node) *leadership {
	l := &leadership{n: n, timeout: DefaultEstablishTimeout}
	if t := n.cfg.Testing; t != nil && t.EstablishTimeout > 0 {
		l.timeout = t.EstablishTimeout
	}
	l.duties = []*duty{
		{name: "dispatcher", establish: n.startDispatcher, revoke: n.stopDispatcher},
		{name: "scheduler", run: n.runScheduler},
		{name: "disk hand-off", run: n.disk.handOffLoop},
		{name: "consistency check", run: n.runConsistencyCheck},
		{name: "leader health", establish: l.serveHealth, revoke: l.stopHealth},
	}
	return l
}

// watch follows Raft's leadership notifications until the node's context
// ends. NotifyCh must be drained or Raft blocks; a true after a true means
// leadership was lost and won again in between, so every notification
// revokes the term before a new one starts.
func (l *leadership) watch() {
	defer l.n.wg.Done()
	for {
		select {
		case isLeader := <-l.n.notifyCh:
			l.revoke()
			if isLeader {
				l.gain()
			}
		case <-l.n.ctx.Done():
			l.revoke()
			return
		}
	}
}

// gain starts a term: its Barrier and duties run in their own goroutine,
// so the watcher keeps draining notifications.
func (l *leadership) gain() {
	ctx, cancel := context.WithCancel(l.n.ctx)
	t := &term{ctx: ctx, cancel: cancel, done: make(chan struct{})}
	l.mu.Lock()
	l.term = t
	l.mu.Unlock()
	l.n.wg.Add(1)
	go func() {
		defer l.n.wg.Done()
		defer close(t.done)
		l.lead(t)
	}()
}

// lead establishes t; on failure it revokes what it established and hands
// leadership to a peer (or, alone, tries again a second later).
func (l *leadership) lead(t *term) {
	n := l.n
	for t.ctx.Err() == nil {
		err := l.establish(t)
		if err == nil {
			n.log.Info("leader ready", "term", n.raft.Stats()["term"])
			return
		}
		if !l.current(t) || n.raft.State() != raft.Leader {
			return
		}
		n.log.Warn("could not establish leadership; stepping down", "err", err)
		if n.otherVoters() > 0 {
			if err := waitFuture(t.ctx, n.raft.LeadershipTransfer()); err == nil {
				return // the watcher revokes on the notification
			} else if t.ctx.Err() == nil {
				n.log.Warn("leadership transfer after failed establish", "err", err)
			}
		}
		select {
		case <-t.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// establish runs the Barrier, then each duty in order. A failure revokes
// the duties already established.
func (l *leadership) establish(t *term) error {
	if err := l.barrier(t.ctx); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range l.duties {
		if !l.currentLocked(t) {
			return errRevoked // the revoker cleans up
		}
		if err := t.start(d); err != nil {
			for _, a := range reversed(t.active) {
				a.stop()
			}
			t.active = nil
			return fmt.Errorf("%w: %s: %w", errEstablish, d.name, err)
		}
	}
	t.ready = true
	return nil
}

// barrier waits, up to l.timeout, for the FSM to hold every entry
// committed before this term. A barrier queued for the FSM when Raft
// shuts down may never be answered, so it is waited for with the term's
// context (the waiting goroutine ends with Raft).
func (l *leadership) barrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	for {
		err := waitFuture(ctx, l.n.raft.Barrier(l.timeout))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || l.n.raft.State() != raft.Leader {
			return fmt.Errorf("%w: barrier: %w", errEstablish, err)
		}
		l.n.log.Warn("barrier failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: barrier: %w", errEstablish, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// current reports whether t is still the node's term (not revoked).
func (l *leadership) current(t *term) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.currentLocked(t)
}

func (l *leadership) currentLocked(t *term) bool { return l.term == t && t.ctx.Err() == nil }

// start establishes d for t with its own context (under leadership.mu).
func (t *term) start(d *duty) error {
	ctx, cancel := context.WithCancel(t.ctx)
	a := &activeDuty{d: d, cancel: cancel, done: make(chan struct{})}
	if d.establish != nil {
		if err := d.establish(ctx); err != nil {
			cancel()
			return err
		}
	}
	if d.run != nil {
		go func() {
			defer close(a.done)
			d.run(ctx)
		}()
	} else {
		close(a.done)
	}
	t.active = append(t.active, a)
	return nil
}

// stop revokes one established duty and waits for its loop to end.
func (a *activeDuty) stop() {
	a.cancel()
	<-a.done
	if a.d.revoke != nil {
		a.d.revoke()
	}
}

// revoke ends the current term, if any: its context is cancelled, its
// establishing goroutine waited for, and its duties revoked in reverse
// order, each loop waited for. Safe to call any number of times, from any
// goroutine; it returns once nothing of the term runs.
func (l *leadership) revoke() {
	l.revokeMu.Lock()
	defer l.revokeMu.Unlock()
	l.mu.Lock()
	t := l.term
	l.term = nil
	l.mu.Unlock()
	if t == nil {
		return
	}
	t.cancel()
	<-t.done
	l.mu.Lock()
	active := t.active
	t.active = nil
	l.mu.Unlock()
	for _, a := range reversed(active) {
		a.stop()
	}
}

// add appends a duty; in a term already established it starts at once.
// The returned function removes it, revoking it if it runs.
func (l *leadership) add(d *duty) (remove func()) {
	l.mu.Lock()
	l.duties = append(l.duties, d)
	if t := l.term; t != nil && t.ready && t.ctx.Err() == nil {
		if err := t.start(d); err != nil {
			l.n.log.Warn("leader duty not established", "duty", d.name, "err", err)
		}
	}
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.duties = slices.DeleteFunc(l.duties, func(x *duty) bool { return x == d })
			var mine *activeDuty
			if t := l.term; t != nil {
				i := slices.IndexFunc(t.active, func(a *activeDuty) bool { return a.d == d })
				if i >= 0 {
					mine = t.active[i]
					t.active = slices.Delete(t.active, i, i+1)
				}
			}
			l.mu.Unlock()
			if mine != nil {
				mine.stop()
				return
			}
			// Not in the current term: a revoke may be stopping it right
			// now; wait for that to finish, so it runs no more on return.
			l.revokeMu.Lock()
			l.revokeMu.Unlock() //nolint:staticcheck // a barrier, not a critical section
		})
	}
}

// running names the duties established now, in order (tests).
func (l *leadership) running() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == nil {
		return nil
	}
	var out []string
	for _, a := range l.term.active {
		out = append(out, a.d.name)
	}
	return out
}

// serveHealth is the last built-in duty: the node now serves as leader.
func (l *leadership) serveHealth(context.Context) error {
	l.ready.Store(true)
	for _, name := range l.n.leaderHealthNames() {
		l.n.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	return nil
}

// stopHealth is revoked first: clients and load balancers stop treating
// the node as the leader before its duties stop.
func (l *leadership) stopHealth() {
	l.ready.Store(false)
	for _, name := range l.n.leaderHealthNames() {
		l.n.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
}

// startDispatcher is the dispatcher duty's establish.
func (n *Node) startDispatcher(context.Context) error {
	d := dispatch.New(n.fsm, diskGatedProposer{n.disk, countingProposer{n.prop, n.metrics}},
		dispatch.Options{Clock: n.clock, Retention: n.cfg.Retention, Limits: n.dispatchLimits()})
	n.mu.Lock()
	n.disp = d
	n.mu.Unlock()
	return nil
}

// stopDispatcher is the dispatcher duty's revoke: parked fetches are
// answered NOT_LEADER, so workers move on to the new leader.
func (n *Node) stopDispatcher() {
	n.mu.Lock()
	d := n.disp
	n.disp = nil
	n.mu.Unlock()
	if d != nil {
		d.Stop()
	}
}

// AddLeaderDuty runs fn for every term this node leads, started once the
// node is leader ready (after the built-in duties) and given a context
// that ends when the term does; the term's revoke waits for fn to return,
// so fn must return promptly once ctx ends (bounding any call it makes
// then by its own short deadline). In a term already established, fn
// starts at once. The returned function removes the duty, cancelling and
// waiting for a running fn. brokerd/etcdnode keeps the etcd leader hint
// this way.
func (n *Node) AddLeaderDuty(name string, fn func(ctx context.Context)) (remove func()) {
	return n.lead.add(&duty{name: name, run: fn})
}

// waitFuture waits for f, or until ctx ends.
func waitFuture(ctx context.Context, f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func reversed[T any](s []T) []T {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}
