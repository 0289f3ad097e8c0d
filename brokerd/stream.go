package brokerd

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// EnqueueStream is pipelined produce. The handler's goroutine reads frames
// while fewer than Limits.MaxStreamWindow jobs are unanswered (so a full
// window stops the reading, and the transport's flow control pushes back
// on the producer); each job is proposed on its own goroutine through the
// proposer, which group-commits the jobs in flight into shared Raft
// entries; one sender goroutine writes the answers as they come. Every
// job read is answered before the stream ends, so a job the producer sent
// and got no answer for was never read: definite. A job's answer is the
// one Enqueue would give for it alone.
func (s *brokerService) EnqueueStream(st raftqv1.Broker_EnqueueStreamServer) error {
	n := s.n
	ctx := st.Context()
	if !n.isLeader() {
		// Forwarding a stream would hold a follower's goroutines for the
		// stream's life; the producer goes to the leader instead.
		id, addr := n.leader()
		return apierr.NotLeader(id, addr)
	}
	var p *auth.Principal
	if n.auth != nil {
		var ok bool
		if p, ok = auth.FromContext(ctx); !ok {
			return status.Error(codes.Unauthenticated, "no principal")
		}
	}
	window := n.cfg.Limits.MaxStreamWindow
	slots := make(chan struct{}, window)
	// Never blocks: at most window answers are owed at once.
	out := make(chan *raftqv1.EnqueueStreamResponse, window)
	var mu sync.Mutex
	inFlight := map[uint64]bool{}

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

	var jobs sync.WaitGroup
	answer := func(seq uint64, res *raftqv1.EnqueueResult, err error) {
		out <- &raftqv1.EnqueueStreamResponse{Seq: seq, Result: res, Error: itemError(err)}
	}
	readErr := func() error {
		for {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			req, err := st.Recv()
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
			if !n.isLeader() {
				// Leadership moved: this job and the rest go to the new
				// leader; nothing of them was proposed here.
				id, addr := n.leader()
				answer(seq, nil, apierr.NotLeader(id, addr))
				return apierr.NotLeader(id, addr)
			}
			// A job without a valid queue name is refused by enqueue
			// (InvalidArgument) before its queue could be authorized.
			if n.auth != nil && validateQueue(req.GetJob().GetQueue()) == nil {
				if err := n.auth.Check(ctx, p, auth.Access{Queues: []string{req.GetJob().GetQueue()}}); err != nil {
					answer(seq, nil, err)
					continue
				}
			}
			jobs.Add(1)
			go func() {
				defer jobs.Done()
				res, err := n.enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{req.GetJob()}})
				if err != nil {
					answer(seq, nil, err)
					return
				}
				answer(seq, res.Results[0], nil)
			}()
		}
	}()
	jobs.Wait()
	close(out)
	if err := <-sendDone; readErr == nil {
		readErr = err
	}
	return readErr
}
