package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// session is one Consume stream of a queue; ended closes when the stream
// is over, and from then on its jobs' keepers poll for cancels.
type session struct {
	ended chan struct{}
}

// consumeLoop is queueLoop on Consume streams: one stream at a time to
// the leader, a credit for each free run slot, a task for each job
// pushed, the notices routed to the tasks. When a stream ends (the leader
// lost its leadership, the broker went away) the loop opens the next one,
// where the client says the leader now is; the credit of the old stream
// goes with it, and the jobs it pushed run on, settled as usual.
// A pool whose queues are in several Raft groups gets one stream too:
// the broker merges the groups' jobs onto it, within the credit granted.
// It returns true when the broker does not know Consume, refuses these
// queues together (a broker from before that fan-in) or refuses the
// stream by its stream caps (the caller then fetches), false when ctx
// ends.
func (w *Worker) consumeLoop(ctx, base context.Context, q QueueConfig, slots, settleSlots chan struct{}) bool {
	backoff := minFetchBackoff
	for ctx.Err() == nil {
		queues, weights := q.fetchTarget()
		open := &raftqv1.ConsumeOpen{Queues: queues, QueueWeights: weights, WorkerId: w.opts.WorkerID}
		if w.opts.LeaseDuration > 0 {
			open.LeaseDuration = durationpb.New(w.opts.LeaseDuration)
		}
		s, err := w.c.Consume(ctx, open)
		if err != nil {
			if status.Code(err) == codes.Unimplemented {
				w.log.Info("the broker has no Consume; fetching instead", "queue", q.Name)
				w.noConsume.Store(true)
				return true
			}
			if status.Code(err) == codes.InvalidArgument {
				// The broker will not stream these queues together: a
				// broker from before Consume streams over several Raft
				// groups, for a pool whose queues are in different
				// groups (newer brokers fan such a stream out over the
				// groups). Fetch serves them; a request Fetch refuses
				// too says why there.
				w.log.Info("the broker refused a consume stream for these queues; fetching instead", "queue", q.Name, "err", err)
				return true
			}
			if status.Code(err) == codes.ResourceExhausted && raftqerr.Detail(err) == nil {
				// The broker's stream caps (limits.max_streams*) refused
				// another stream: this queue long-polls instead, which
				// those caps do not count.
				w.log.Warn("the broker refused another stream; this queue fetches instead", "queue", q.Name, "err", err)
				return true
			}
			if ctx.Err() != nil {
				return false
			}
			w.m.fetches.WithLabelValues(q.Name, "error").Inc()
			w.log.Warn("opening a consume stream failed; backing off", "queue", q.Name, "err", err, "backoff", backoff)
			if !sleepCtx(ctx, backoff) {
				return false
			}
			backoff = min(backoff*2, maxFetchBackoff)
			continue
		}
		backoff = minFetchBackoff
		err = w.consumeSession(ctx, base, q, s, slots, settleSlots)
		if ctx.Err() != nil {
			return false
		}
		w.m.fetches.WithLabelValues(q.Name, "error").Inc()
		if raftqerr.Reason(err) == raftqv1.ErrorDetail_NOT_LEADER {
			// The client moved to the named leader: go there at once.
			w.log.Info("consume stream ended: leader changed; reconnecting", "queue", q.Name, "err", err)
			continue
		}
		w.log.Warn("consume stream ended; reconnecting", "queue", q.Name, "err", err, "backoff", backoff)
		if !sleepCtx(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, maxFetchBackoff)
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// consumeSession runs one stream until it ends: it grants a credit per
// run slot it takes, starts a task per job, and routes notices. At
// shutdown (ctx) it stops granting, closes its side and takes the jobs
// the broker already leased for it for up to fetchDrainGrace, giving
// them straight back.
func (w *Worker) consumeSession(ctx, base context.Context, q QueueConfig, s *client.Consumer, slots, settleSlots chan struct{}) error {
	sess := &session{ended: make(chan struct{})}
	done := make(chan struct{})
	granted := 0 // run slots held for credit not used yet
	defer func() {
		close(done)
		s.Close()
		close(sess.ended)
		for ; granted > 0; granted-- {
			<-slots
		}
	}()
	type frame struct {
		r   *raftqv1.ConsumeResponse
		err error
	}
	frames := make(chan frame)
	go func() {
		for {
			r, err := s.Recv()
			select {
			case frames <- frame{r, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	maxCredit := int(s.MaxCredit)
	if maxCredit <= 0 {
		maxCredit = q.Concurrency
	}
	stopping := false
	var drain <-chan time.Time
	for {
		var slotC chan struct{}
		var ctxDone <-chan struct{}
		if !stopping {
			ctxDone = ctx.Done()
			if granted < maxCredit {
				slotC = slots
			}
		}
		select {
		case slotC <- struct{}{}:
			n := 1
		grab:
			for granted+n < maxCredit {
				select {
				case slots <- struct{}{}:
					n++
				default:
					break grab
				}
			}
			granted += n
			// A refused send means the stream ended: Recv says why.
			_ = s.Credit(int32(n))
		case f := <-frames:
			if f.err != nil {
				if stopping && errors.Is(f.err, io.EOF) {
					return ctx.Err()
				}
				if errors.Is(f.err, io.EOF) {
					return fmt.Errorf("worker: the broker ended the consume stream")
				}
				return f.err
			}
			switch x := f.r.GetFrame().(type) {
			case *raftqv1.ConsumeResponse_Job:
				w.m.fetched.WithLabelValues(q.Name).Inc()
				if granted == 0 {
					// More than granted: the broker never does this; give
					// it back rather than run over the concurrency.
					w.start(base, x.Job, time.Now(), nil, settleSlots, true, sess)
					continue
				}
				granted--
				w.start(base, x.Job, time.Now(), slots, settleSlots, stopping, sess)
			case *raftqv1.ConsumeResponse_Notice:
				w.notice(x.Notice)
			}
		case <-ctxDone:
			stopping = true
			_ = s.CloseSend()
			drain = time.After(min(fetchDrainGrace, w.opts.ShutdownTimeout))
		case <-drain:
			return ctx.Err()
		}
	}
}

// notice hands a broker's notice to the task it is about (if it still
// runs that lease).
func (w *Worker) notice(n *raftqv1.ConsumeNotice) {
	var t *task
	w.mu.RLock()
	for x := range w.tasks {
		if x.job.ID == n.GetJobId() && x.job.LeaseToken == n.GetLeaseToken() {
			t = x
			break
		}
	}
	w.mu.RUnlock()
	if t == nil {
		return
	}
	switch n.GetKind() {
	case raftqv1.ConsumeNotice_KIND_CANCEL_REQUESTED:
		t.markCancelled()
	case raftqv1.ConsumeNotice_KIND_LEASE_LOST:
		// A task being settled has ended its lease itself; the notice can
		// be about that very settle.
		if !t.claimed.Load() {
			t.markLost(errors.New("the broker says the lease is lost"))
		}
	}
}
