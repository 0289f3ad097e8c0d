package brokerd

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// EnqueueStream is pipelined produce. The handler's goroutine reads frames
// while fewer than Limits.MaxStreamWindow jobs are unanswered (so a full
// window stops the reading, and the transport's flow control pushes back
// on the producer), validates and authorizes each job on its own, and
// hands the valid ones to the stream's group commit (streamCommit): jobs
// read while the stream's previous command is in flight go together in
// its next Enqueue command. One sender goroutine writes the answers as
// they come. Every job read is answered before the stream ends, so a job
// the producer sent and got no answer for was never read: definite. A
// job's answer is the one Enqueue would give for it alone.
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

	answer := func(seq uint64, res *raftqv1.EnqueueResult, err error) {
		out <- &raftqv1.EnqueueStreamResponse{Seq: seq, Result: res, Error: itemError(err)}
	}
	var jobs sync.WaitGroup // jobs read and valid, until answered
	gc := &streamCommit{propose: func(batch []streamJob) {
		nj := make([]*fsmpb.NewJob, len(batch))
		for i, b := range batch {
			nj[i] = b.job
		}
		res, err := n.propose(ctx, enqueueCommand(nj))
		if err == nil && len(res.Items) != len(batch) {
			err = apierr.FromError(fmt.Errorf("fsm returned %d results for %d jobs", len(res.Items), len(batch)))
		}
		for i, b := range batch {
			switch {
			case err != nil:
				answer(b.seq, nil, err)
			case res.Items[i].Err != nil:
				answer(b.seq, nil, apierr.FromError(res.Items[i].Err))
			default:
				answer(b.seq, &raftqv1.EnqueueResult{JobId: res.Items[i].JobID, Duplicate: res.Items[i].Duplicate}, nil)
			}
			jobs.Done()
		}
	}, maxJobs: n.cfg.Limits.MaxBatchJobs, maxBytes: n.cfg.Limits.MaxBatchBytes}
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
			nj, err := n.newJobs(&raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{req.GetJob()}}, n.clock())
			if err != nil {
				answer(seq, nil, apierr.FromError(err))
				continue
			}
			jobs.Add(1)
			gc.add(streamJob{seq: seq, job: nj[0]})
		}
	}()
	jobs.Wait()
	close(out)
	if err := <-sendDone; readErr == nil {
		readErr = err
	}
	return readErr
}

// streamJob is a job read from a stream, validated, awaiting its entry.
type streamJob struct {
	seq uint64
	job *fsmpb.NewJob
}

// streamCommit group-commits a stream's jobs: the first job waiting
// starts a proposal at once; jobs read while it is in flight go together
// in one Enqueue command when it returns (at most maxJobs jobs and
// maxBytes of payload, like one Enqueue). No timer, so a lone producer
// waits for nothing, and one command in flight per stream keeps the
// commands few and large.
type streamCommit struct {
	propose  func([]streamJob)
	maxJobs  int
	maxBytes int

	mu      sync.Mutex
	waiting []streamJob
	busy    bool
}

func (g *streamCommit) add(j streamJob) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.waiting = append(g.waiting, j)
	if !g.busy {
		g.busy = true
		go g.loop()
	}
}

func (g *streamCommit) loop() {
	for {
		g.mu.Lock()
		n, bytes := 0, 0
		for n < len(g.waiting) && n < g.maxJobs {
			if b := len(g.waiting[n].job.GetPayload()); n > 0 && bytes+b > g.maxBytes {
				break
			} else {
				bytes += b
			}
			n++
		}
		if n == 0 {
			g.busy = false
			g.mu.Unlock()
			return
		}
		batch := g.waiting[:n:n]
		g.waiting = append([]streamJob(nil), g.waiting[n:]...)
		g.mu.Unlock()
		g.propose(batch)
	}
}
