package brokerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/dispatch"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

const (
	// consumeWait is how long one parked dispatcher fetch of a Consume
	// stream waits before it is parked again (so a stream's waiter never
	// outlives MaxFetchWait, and an idle stream costs one wake-up a
	// while).
	consumeWait = 30 * time.Second
	// consumeWatchEvery is the least time between two looks at the jobs
	// a stream leased, for cancel notices: a busy FSM changes thousands
	// of times a second, and each look reads every tracked job. It is
	// also the most a cancel notice waits for that.
	consumeWatchEvery = 100 * time.Millisecond
	// consumeFlush is how long a stream that ends with an error (a lost
	// leadership) waits for the frames already queued to be sent, so a
	// reading worker gets the jobs leased for it before the end.
	consumeFlush = time.Second
	// consumeLeaderCheck is how often an idle stream checks that this node
	// still leads (a stream with a parked fetch learns it at once, from
	// the dispatcher stopping).
	consumeLeaderCheck = 200 * time.Millisecond
	// consumeSendQueue is how many frames wait for the sender. Small: the
	// pushes are bounded by credit and tracked jobs anyway, and a consumer
	// that stops reading stops the stream's loop here.
	consumeSendQueue = 8
	// leaseExpiredError is the last_error the FSM writes when it expires a
	// lease (fsm.leaseExpiredError): how a stream tells a lease that ran
	// out from the worker's own nack.
	leaseExpiredError = "lease expired"
)

// Consume is streaming fetch (see broker.proto): after the open frame the
// leader keeps one dispatcher fetch parked for the stream while it has
// credit, pushes what it leases, and watches the jobs it pushed for
// cancels and lost leases. Followers refuse the stream with NOT_LEADER
// naming the leader, as for EnqueueStream: forwarding would hold a
// follower's goroutines for the stream's life.
func (s *brokerService) Consume(st raftqv1.Broker_ConsumeServer) error {
	n := s.n
	if !n.isLeader() {
		id, addr := n.leader()
		return n.notLeader(id, addr)
	}
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	var p *auth.Principal
	if n.auth != nil {
		var ok bool
		if p, ok = auth.FromContext(ctx); !ok {
			return status.Error(codes.Unauthenticated, "no principal")
		}
	}
	first, err := st.Recv()
	if errors.Is(err, io.EOF) {
		return consumeInvalid("the stream closed before its open frame")
	}
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return consumeInvalid("the first frame must be open")
	}
	fr, err := validateConsumeOpen(n.cfg.Limits, open)
	if err != nil {
		return apierr.FromError(err)
	}
	// The queues are checked as Fetch's are (the stream's role was checked
	// when it opened).
	if n.auth != nil {
		if err := n.auth.Check(ctx, p, auth.Access{Queues: fr.Queues}); err != nil {
			n.auth.RefusedItem(ctx, p, raftqv1.Broker_Consume_FullMethodName, open, err)
			return err
		}
	}
	d, err := n.dispatcher(ctx, 5*time.Second)
	if err != nil {
		if errors.Is(err, apierr.ErrNotLeader) {
			id, addr := n.leader()
			return n.notLeader(id, addr)
		}
		return apierr.FromError(err)
	}
	c := &consumer{
		n: n, st: st, d: d, fr: fr,
		maxCredit: n.cfg.Limits.MaxFetchJobs,
		credit:    int(open.GetCredit()),
		tracked:   map[string]*trackedLease{},
	}
	return c.run(ctx)
}

// consumeInvalid is a bad frame's refusal, which ends the stream.
func consumeInvalid(msg string) error {
	return apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "consume: "+msg)
}

// validateConsumeOpen checks an open frame as the Fetch it stands for and
// its initial credit.
func validateConsumeOpen(lim Limits, open *raftqv1.ConsumeOpen) (dispatch.FetchRequest, error) {
	fr, err := validateFetch(lim, &raftqv1.FetchRequest{Queues: open.GetQueues(), WorkerId: open.GetWorkerId(),
		LeaseDuration: open.GetLeaseDuration(), QueueWeights: open.GetQueueWeights()})
	if err != nil {
		return fr, err
	}
	if c := open.GetCredit(); c < 0 || int(c) > lim.MaxFetchJobs {
		return fr, fmt.Errorf("%w: consume: credit must be between 0 and %d", apierr.ErrInvalid, lim.MaxFetchJobs)
	}
	return fr, nil
}

// trackedLease is a job pushed on a stream, watched until its lease ends.
type trackedLease struct {
	token        uint64
	cancelPushed bool
}

// consumer is one Consume stream on the leader. Its run loop owns the
// credit and the tracked jobs; one goroutine reads frames, one parks the
// dispatcher fetches, one sends.
type consumer struct {
	n         *Node
	st        raftqv1.Broker_ConsumeServer
	d         *dispatch.Dispatcher
	fr        dispatch.FetchRequest
	maxCredit int

	credit  int // jobs the worker may still be sent
	tracked map[string]*trackedLease
}

type consumeFrame struct {
	req *raftqv1.ConsumeRequest
	err error
}

// readFrames reads a Consume stream's frames on a goroutine of its own
// and hands them over one at a time, the error that ends the stream last;
// it stops when ctx ends.
func readFrames(ctx context.Context, recv func() (*raftqv1.ConsumeRequest, error)) <-chan consumeFrame {
	frames := make(chan consumeFrame)
	go func() {
		for {
			req, err := recv()
			select {
			case frames <- consumeFrame{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return frames
}

type consumeFetched struct {
	jobs []fsm.Job
	err  error
}

func (c *consumer) run(ctx context.Context) error {
	n := c.n
	// The sender: the only goroutine that writes to the stream. A frame
	// waits in the queue while the consumer does not read; the loop then
	// blocks pushing the next one, so nothing grows.
	out := make(chan *raftqv1.ConsumeResponse, consumeSendQueue)
	sendErr := make(chan error, 1)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for f := range out {
			if err := c.st.Send(f); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	finish := func(err error) error {
		close(out)
		// Let the frames queued reach the worker before the end status.
		// A clean end waits for all of them: the worker closed its side
		// and reads until the end. An error end waits a little: the
		// worker may have stopped reading.
		var flush <-chan time.Time
		if err != nil {
			t := time.NewTimer(consumeFlush)
			defer t.Stop()
			flush = t.C
		}
		select {
		case <-sent:
		case <-ctx.Done():
		case <-flush:
		}
		if err == nil {
			select {
			case err = <-sendErr:
			default:
			}
		}
		return err
	}
	if err := c.push(ctx, out, sendErr, &raftqv1.ConsumeResponse{Frame: &raftqv1.ConsumeResponse_Opened{
		Opened: &raftqv1.ConsumeOpened{MaxCredit: int32(c.maxCredit)}}}); err != nil {
		return finish(err)
	}

	// The reader hands frames over one at a time; the loop answers a bad
	// one by ending the stream.
	frames := readFrames(ctx, c.st.Recv)

	// The fetcher parks one dispatcher fetch at a time, for the credit
	// the loop hands it. Its context ends with the stream's, or when the
	// worker closes its side: the dispatcher then hands back what it
	// leased for a fetch that is gone.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	want := make(chan int)
	fetched := make(chan consumeFetched)
	go func() {
		for {
			var max int
			select {
			case max = <-want:
			case <-fctx.Done():
				return
			}
			req := c.fr
			req.Max, req.Wait = max, min(consumeWait, n.cfg.Limits.MaxFetchWait)
			jobs, err := c.d.Fetch(fctx, req)
			if len(jobs) > 0 {
				n.crash(CrashLeaseBeforeReply)
			}
			traceLeases(fctx, jobs, req.WorkerID)
			select {
			case fetched <- consumeFetched{jobs, err}:
			case <-ctx.Done():
				return
			}
		}
	}()

	leaderTick := time.NewTicker(consumeLeaderCheck)
	defer leaderTick.Stop()
	changed := n.fsm.Changed()
	var watchAt <-chan time.Time
	var lastWatch time.Time
	fetching, closing := false, false
	for {
		if !fetching && !closing && c.credit > 0 {
			select {
			case want <- min(c.credit, n.cfg.Limits.MaxFetchJobs):
				fetching = true
			case <-ctx.Done():
				return finish(ctx.Err())
			}
		}
		if closing && !fetching {
			return finish(nil)
		}
		select {
		case f := <-frames:
			if errors.Is(f.err, io.EOF) {
				// The worker is done: end the parked fetch, push what it
				// already leased, then end the stream.
				closing = true
				fcancel()
				continue
			}
			if f.err != nil {
				return finish(f.err)
			}
			if err := c.frame(f.req); err != nil {
				return finish(err)
			}
		case r := <-fetched:
			fetching = false
			if r.err != nil {
				if closing && fctx.Err() != nil {
					continue
				}
				if errors.Is(r.err, apierr.ErrNotLeader) {
					return finish(c.notLeader())
				}
				return finish(apierr.FromError(r.err))
			}
			for i := range r.jobs {
				j := &r.jobs[i]
				c.credit--
				c.tracked[j.ID] = &trackedLease{token: j.LeaseToken}
				if err := c.push(ctx, out, sendErr, &raftqv1.ConsumeResponse{Frame: &raftqv1.ConsumeResponse_Job{Job: jobToProto(j)}}); err != nil {
					return finish(err)
				}
			}
		case <-changed:
			changed = n.fsm.Changed()
			if len(c.tracked) == 0 || watchAt != nil {
				continue
			}
			if wait := consumeWatchEvery - time.Since(lastWatch); wait > 0 {
				watchAt = time.After(wait)
				continue
			}
			lastWatch = time.Now()
			if err := c.watch(ctx, out, sendErr); err != nil {
				return finish(err)
			}
		case <-watchAt:
			watchAt, lastWatch = nil, time.Now()
			if err := c.watch(ctx, out, sendErr); err != nil {
				return finish(err)
			}
		case <-leaderTick.C:
			if !n.isLeader() {
				return finish(c.notLeader())
			}
		case <-n.ctx.Done():
			return finish(c.notLeader())
		case err := <-sendErr:
			return finish(err)
		case <-ctx.Done():
			return finish(ctx.Err())
		}
	}
}

// frame applies one frame after the open one.
func (c *consumer) frame(req *raftqv1.ConsumeRequest) error {
	switch f := req.GetFrame().(type) {
	case *raftqv1.ConsumeRequest_Credit:
		switch {
		case f.Credit < 1:
			return consumeInvalid(fmt.Sprintf("credit %d: a credit frame grants at least 1", f.Credit))
		case c.credit+int(f.Credit) > c.maxCredit:
			return apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_TOO_LARGE,
				fmt.Sprintf("consume: credit %d on top of %d left is over the limit of %d", f.Credit, c.credit, c.maxCredit))
		}
		c.credit += int(f.Credit)
		return nil
	case *raftqv1.ConsumeRequest_Open:
		return consumeInvalid("the stream is already open")
	default:
		return consumeInvalid("a frame with neither open nor credit")
	}
}

// push queues a frame for the sender, waiting while the queue is full (a
// consumer that does not read), but not past the stream's end or a lost
// leadership.
func (c *consumer) push(ctx context.Context, out chan<- *raftqv1.ConsumeResponse, sendErr <-chan error, f *raftqv1.ConsumeResponse) error {
	select {
	case out <- f:
		return nil
	default:
	}
	tick := time.NewTicker(consumeLeaderCheck)
	defer tick.Stop()
	for {
		select {
		case out <- f:
			return nil
		case err := <-sendErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-c.n.ctx.Done():
			return c.notLeader()
		case <-tick.C:
			if !c.n.isLeader() {
				return c.notLeader()
			}
		}
	}
}

// watch reads the jobs this stream leased and pushes a notice for each
// that was cancelled or whose lease ended other than by the worker's own
// settle; a job whose lease ended is no longer watched.
func (c *consumer) watch(ctx context.Context, out chan<- *raftqv1.ConsumeResponse, sendErr <-chan error) error {
	// One read of every tracked job (not a read each), and no read held
	// open while a push waits for the worker.
	ids := make([]string, 0, len(c.tracked))
	for id := range c.tracked {
		ids = append(ids, id)
	}
	for i, jp := range c.n.fsm.GetMany(ids) {
		id, tl := ids[i], c.tracked[ids[i]]
		ok := jp != nil
		var j fsm.Job
		if ok {
			j = *jp
		}
		var kind raftqv1.ConsumeNotice_Kind
		switch {
		case ok && j.State == fsm.StateLeased && j.LeaseToken == tl.token:
			if !j.CancelRequested || tl.cancelPushed {
				continue
			}
			tl.cancelPushed = true
			kind = raftqv1.ConsumeNotice_KIND_CANCEL_REQUESTED
		case ok && j.LeaseToken == tl.token && (j.State == fsm.StateSucceeded ||
			(j.LastError != leaseExpiredError && j.LastError != fsm.StartToCloseError)):
			// Acked or nacked by the lease's holder: nothing to tell.
			delete(c.tracked, id)
			continue
		default:
			// Expired (the lease, or the attempt's start-to-close),
			// leased again, or gone.
			delete(c.tracked, id)
			kind = raftqv1.ConsumeNotice_KIND_LEASE_LOST
		}
		if err := c.push(ctx, out, sendErr, &raftqv1.ConsumeResponse{Frame: &raftqv1.ConsumeResponse_Notice{
			Notice: &raftqv1.ConsumeNotice{JobId: id, LeaseToken: tl.token, Kind: kind}}}); err != nil {
			return err
		}
	}
	return nil
}

// notLeader is how a stream ends when this node no longer leads: the
// worker reconnects to the leader it names.
func (c *consumer) notLeader() error {
	id, addr := c.n.leader()
	return c.n.notLeader(id, addr)
}
