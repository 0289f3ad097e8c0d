package brokerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// EnqueueStream is pipelined produce (streamPipeline): frames are read
// while fewer than Limits.MaxStreamWindow jobs are unanswered (so a full
// window stops the reading, and the transport's flow control pushes back
// on the producer); each job is proposed on its own goroutine through the
// proposer, which group-commits the jobs in flight into shared Raft
// entries; one sender goroutine writes the answers as they come. Every
// job handled is answered before the stream ends, so a job the producer
// sent and got no answer for was never proposed: definite. A job's answer
// is the one Enqueue would give for it alone.
func (s *brokerService) EnqueueStream(st raftqv1.Broker_EnqueueStreamServer) error {
	n := s.n
	ctx := st.Context()
	if !n.isLeader() {
		// Forwarding a stream would hold a follower's goroutines for the
		// stream's life; the producer goes to the leader instead.
		id, addr := n.leader()
		return n.notLeader(id, addr)
	}
	var p *auth.Principal
	if n.auth != nil {
		var ok bool
		if p, ok = auth.FromContext(ctx); !ok {
			return status.Error(codes.Unauthenticated, "no principal")
		}
	}
	stopErr := func() error { id, addr := n.leader(); return n.notLeader(id, addr) }
	runners := newJobRunners(jobRunnerIdle)
	defer runners.stop()
	return streamPipeline(ctx, st, n.cfg.Limits.MaxStreamWindow, n.ctx.Done(), stopErr, func(req *raftqv1.EnqueueStreamRequest, answer func(*raftqv1.EnqueueResult, error)) error {
		if !n.isLeader() {
			// Leadership moved: this job and the rest go to the new
			// leader; nothing of them was proposed here.
			id, addr := n.leader()
			answer(nil, n.notLeader(id, addr))
			return n.notLeader(id, addr)
		}
		// Each job is a request for the caller's rate limit, as each
		// EnqueueOne was (the stream's opening took one too).
		if n.auth != nil {
			if err := n.auth.Allow(p); err != nil {
				n.auth.RefusedItem(ctx, p, raftqv1.Broker_EnqueueStream_FullMethodName, req.GetJob(), err)
				answer(nil, err)
				return nil
			}
		}
		// A job without a valid queue name is refused by enqueue
		// (InvalidArgument) before its queue could be authorized.
		if n.auth != nil && validateQueue(req.GetJob().GetQueue()) == nil {
			if err := n.auth.Check(ctx, p, auth.Access{Queues: []string{req.GetJob().GetQueue()}}); err != nil {
				n.auth.RefusedItem(ctx, p, raftqv1.Broker_EnqueueStream_FullMethodName, req.GetJob(), err)
				answer(nil, err)
				return nil
			}
		}
		runners.run(func() {
			res, err := n.enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{req.GetJob()}})
			if err != nil {
				answer(nil, err)
				return
			}
			answer(res.Results[0], nil)
		})
		return nil
	})
}

// jobRunnerIdle is how long a stream's job runner waits for another job
// before it ends.
const jobRunnerIdle = 5 * time.Second

// jobRunners run a stream's jobs, each of which waits for its Raft commit,
// on goroutines that outlive a job: a goroutine per job cost the leader
// ~5 % of its CPU at 256 producers in starting it and growing its stack
// for the enqueue path. A job goes to an idle runner, or to a new one;
// there are never more runners than jobs in flight at once (the stream's
// window), and a runner with nothing to do for jobRunnerIdle ends.
type jobRunners struct {
	tasks chan func()
	done  chan struct{}
	idle  time.Duration
	// started and live count the runners started and not yet ended (for
	// tests and debugging).
	started, live atomic.Int64
}

func newJobRunners(idle time.Duration) *jobRunners {
	return &jobRunners{tasks: make(chan func()), done: make(chan struct{}), idle: idle}
}

// run runs f on an idle runner, or a new one.
func (r *jobRunners) run(f func()) {
	select {
	case r.tasks <- f:
		return
	default:
	}
	r.started.Add(1)
	r.live.Add(1)
	go r.loop(f)
}

func (r *jobRunners) loop(f func()) {
	defer r.live.Add(-1)
	idle := time.NewTimer(r.idle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(r.idle)
		select {
		case f = <-r.tasks:
		case <-idle.C:
			return
		case <-r.done:
			return
		}
	}
}

// stop ends the idle runners once the stream is over (a running job ends
// its runner when it is done).
func (r *jobRunners) stop() { close(r.done) }

// enqueueStream is the part of the EnqueueStream server stream the
// pipeline uses (a fake in its unit test).
type enqueueStream interface {
	Recv() (*raftqv1.EnqueueStreamRequest, error)
	Send(*raftqv1.EnqueueStreamResponse) error
}

// streamPipeline reads frames while fewer than window are unanswered and
// gives each to handle with its answer function, which must be called
// exactly once, now or later from any goroutine. A non-nil error from
// handle ends the reading (after its frame is answered). One goroutine
// sends the answers as they come; streamPipeline returns when the reading
// has ended and every frame read is answered: nil when the producer
// closed its side, else why the stream ends. A frame without seq, or with
// the seq of one still unanswered, ends the stream with InvalidArgument.
//
// When stop closes, the reading ends with stopErr(): a frame the receiver
// read but had not handed over is dropped unprocessed (so the producer's
// reading of the stream's end as definite holds). That is how an idle
// stream ends at shutdown instead of holding the server.
func streamPipeline(ctx context.Context, st enqueueStream, window int, stop <-chan struct{}, stopErr func() error,
	handle func(req *raftqv1.EnqueueStreamRequest, answer func(*raftqv1.EnqueueResult, error)) error,
) error {
	slots := make(chan struct{}, window)
	// Never blocks: at most window answers are owed at once.
	out := make(chan *raftqv1.EnqueueStreamResponse, window)
	var mu sync.Mutex
	inFlight := map[uint64]bool{}
	var owed sync.WaitGroup

	sendDone := make(chan error, 1)
	go func() {
		var sendErr error
		for r := range out {
			if sendErr == nil {
				sendErr = st.Send(r)
			}
			mu.Lock()
			delete(inFlight, r.Seq)
			mu.Unlock()
			<-slots
		}
		sendDone <- sendErr
	}()

	// The receiver takes a slot before each Recv (a full window stops the
	// reading) and hands the frame over; it ends after an error frame or
	// when the reading ends (quit), dropping a frame it could not hand over.
	type frame struct {
		req *raftqv1.EnqueueStreamRequest
		err error
	}
	frames, quit := make(chan frame), make(chan struct{})
	go func() {
		for {
			select {
			case slots <- struct{}{}:
			case <-quit:
				return
			}
			req, err := st.Recv()
			select {
			case frames <- frame{req, err}:
			case <-quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	readErr := func() error {
		for {
			var f frame
			select {
			case f = <-frames:
			case <-stop:
				return stopErr()
			case <-ctx.Done():
				return ctx.Err()
			}
			req, err := f.req, f.err
			if errors.Is(err, io.EOF) {
				<-slots
				return nil // the producer is done: answer what is owed, then end
			}
			if err != nil {
				<-slots
				return err
			}
			seq := req.GetSeq()
			mu.Lock()
			dup := inFlight[seq]
			if seq != 0 && !dup {
				inFlight[seq] = true
			}
			mu.Unlock()
			switch {
			case seq == 0:
				<-slots
				return apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, "enqueue stream: a frame without seq cannot be answered")
			case dup:
				<-slots
				return apierr.New(codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT,
					fmt.Sprintf("enqueue stream: seq %d is still in flight", seq))
			}
			owed.Add(1)
			var once sync.Once
			answer := func(res *raftqv1.EnqueueResult, err error) {
				once.Do(func() {
					out <- &raftqv1.EnqueueStreamResponse{Seq: seq, Result: res, Error: itemError(err)}
					owed.Done()
				})
			}
			if err := handle(req, answer); err != nil {
				return err
			}
		}
	}()
	close(quit)
	owed.Wait()
	close(out)
	if err := <-sendDone; readErr == nil {
		readErr = err
	}
	return readErr
}
