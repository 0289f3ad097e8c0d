package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// defaultStreamWindow is how many of a client's EnqueueOne calls may await
// their answer on one stream (the broker's own window defaults to 256 too).
const defaultStreamWindow = 256

// producer pipelines concurrent EnqueueOne calls onto one EnqueueStream
// per broker connection: each call sends its job as a frame at once and
// waits for its own answer, so N concurrent producers cost one stream and
// the broker group-commits their jobs. There is no timer: a lone call is
// sent at once, and an idle stream costs nothing but the connection's
// keepalive.
type producer struct {
	mu      sync.Mutex
	streams map[*grpc.ClientConn]*pstream
	// unimplemented marks connections to brokers without EnqueueStream.
	unimplemented map[*grpc.ClientConn]bool
}

// pstream is one open EnqueueStream.
type pstream struct {
	cancel context.CancelFunc
	stream raftqv1.Broker_EnqueueStreamClient
	slots  chan struct{} // the window: one per unanswered frame

	sendMu sync.Mutex // frames are sent one at a time

	mu      sync.Mutex
	nextSeq uint64
	waiting map[uint64]chan streamOutcome
	err     error // set when the stream ended; every later call fails with it
}

type streamOutcome struct {
	res *raftqv1.EnqueueResult
	err error
}

// streamFor returns cc's open stream, opening one if there is none (or
// the last one ended). ok is false when the broker does not know
// EnqueueStream. Opening waits for the connection, but no longer than
// ctx.
func (c *Client) streamFor(ctx context.Context, cc *grpc.ClientConn) (s *pstream, ok bool, err error) {
	p := &c.prod
	p.mu.Lock()
	if p.unimplemented[cc] {
		p.mu.Unlock()
		return nil, false, nil
	}
	if s := p.streams[cc]; s != nil && s.alive() {
		p.mu.Unlock()
		return s, true, nil
	}
	p.mu.Unlock()
	if s, err = c.openStream(ctx, cc); err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.streams[cc]; cur != nil && cur.alive() {
		s.cancel() // another call opened one meanwhile
		return cur, true, nil
	}
	if p.streams == nil {
		p.streams = map[*grpc.ClientConn]*pstream{}
	}
	p.streams[cc] = s
	go s.receive()
	return s, true, nil
}

// openStream opens an EnqueueStream on cc. The stream lives until it
// ends or the client closes, not with ctx, which only bounds the wait.
func (c *Client) openStream(ctx context.Context, cc *grpc.ClientConn) (*pstream, error) {
	sctx, cancel := context.WithCancel(context.Background())
	// Every job carries an idempotency key, as for Enqueue.
	sctx = metadata.AppendToOutgoingContext(sctx, idempotentHeader, "1")
	type opened struct {
		st  raftqv1.Broker_EnqueueStreamClient
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		st, err := raftqv1.NewBrokerClient(cc).EnqueueStream(sctx)
		ch <- opened{st, err}
	}()
	var o opened
	select {
	case o = <-ch:
	case <-ctx.Done():
		cancel() // ends the open, or the stream it opened
		return nil, ctx.Err()
	}
	if o.err != nil {
		cancel()
		return nil, o.err
	}
	window := c.opts.StreamWindow
	if window <= 0 {
		window = defaultStreamWindow
	}
	return &pstream{cancel: cancel, stream: o.st, slots: make(chan struct{}, window), waiting: map[uint64]chan streamOutcome{}}, nil
}

// markUnimplemented remembers a broker without EnqueueStream.
func (c *Client) markUnimplemented(cc *grpc.ClientConn) {
	p := &c.prod
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.unimplemented == nil {
		p.unimplemented = map[*grpc.ClientConn]bool{}
	}
	p.unimplemented[cc] = true
}

// closeStreams ends every stream (Client.Close).
func (c *Client) closeStreams() {
	p := &c.prod
	p.mu.Lock()
	defer p.mu.Unlock()
	for cc, s := range p.streams {
		s.cancel()
		delete(p.streams, cc)
	}
}

func (s *pstream) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil
}

// receive hands each answer to its caller, and when the stream ends fails
// every call still waiting.
func (s *pstream) receive() {
	for {
		r, err := s.stream.Recv()
		if err != nil {
			s.end(err)
			return
		}
		s.mu.Lock()
		ch, ok := s.waiting[r.GetSeq()]
		delete(s.waiting, r.GetSeq())
		s.mu.Unlock()
		if !ok {
			continue // not ours to answer; the broker never does this
		}
		<-s.slots
		ch <- streamOutcome{res: r.GetResult(), err: ItemErr(r.GetError())}
	}
}

// end fails the calls still waiting. The broker answers every frame it
// read before it ends a stream, so when it ended the stream itself (a
// status with an ErrorDetail, like NOT_LEADER) the frames still waiting
// were never read and share that definite error. Any other end (the
// connection broke, the broker died) leaves them INDETERMINATE: they may
// have been read and committed.
func (s *pstream) end(err error) {
	if !definiteEnd(err) {
		err = raftqerr.New(codes.Unavailable, raftqv1.ErrorDetail_INDETERMINATE, "enqueue stream ended: "+status.Convert(err).Message())
	}
	s.cancel()
	s.mu.Lock()
	s.err = err
	waiting := s.waiting
	s.waiting = map[uint64]chan streamOutcome{}
	s.mu.Unlock()
	for _, ch := range waiting {
		<-s.slots
		ch <- streamOutcome{err: err}
	}
}

// definiteEnd reports whether a stream's final status is the broker's own
// refusal (an ErrorDetail, or a refusal before any frame was read: auth,
// rate limit, an unknown method, a bad frame) rather than a broken
// transport.
func definiteEnd(err error) bool {
	if raftqerr.Detail(err) != nil {
		return true
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.ResourceExhausted, codes.InvalidArgument:
		return true
	}
	return false
}

// enqueue sends one job and waits for its answer (or ctx).
func (s *pstream) enqueue(ctx context.Context, spec *raftqv1.JobSpec) (*raftqv1.EnqueueResult, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ch := make(chan streamOutcome, 1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		<-s.slots
		return nil, err
	}
	s.nextSeq++
	seq := s.nextSeq
	s.waiting[seq] = ch
	s.mu.Unlock()
	s.sendMu.Lock()
	err := s.stream.Send(&raftqv1.EnqueueStreamRequest{Seq: seq, Job: spec})
	s.sendMu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) {
		// Refused here (too large for the transport): never sent. On EOF
		// the stream ended and receive answers us with its status.
		s.mu.Lock()
		_, mine := s.waiting[seq]
		delete(s.waiting, seq)
		s.mu.Unlock()
		if mine {
			<-s.slots
			return nil, err
		}
	}
	select {
	case o := <-ch:
		return o.res, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// enqueueStreamed is EnqueueOne's path: the job goes on the connection's
// stream, with the client's usual leader following and retries (a retry
// carries the same idempotency key, so it never creates a second job).
// Brokers without EnqueueStream, or refusing another stream (their stream
// caps), get a plain Enqueue.
func (c *Client) enqueueStreamed(ctx context.Context, spec *raftqv1.JobSpec) (*raftqv1.EnqueueResult, error) {
	var res *raftqv1.EnqueueResult
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		s, ok, err := c.streamFor(ctx, cc)
		if err != nil {
			return err
		}
		if ok {
			res, err = s.enqueue(ctx, spec)
			switch {
			case status.Code(err) == codes.Unimplemented:
				c.markUnimplemented(cc)
			case status.Code(err) == codes.ResourceExhausted && raftqerr.Detail(err) == nil && !s.alive():
				// The broker's stream cap refused the stream before
				// reading the job: send it on its own.
			default:
				return err
			}
		}
		resp, err := raftqv1.NewBrokerClient(cc).Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{spec}})
		if err == nil {
			if len(resp.Results) != 1 {
				return fmt.Errorf("client: broker answered %d results for one job", len(resp.Results))
			}
			res = resp.Results[0]
		}
		return err
	})
	return res, err
}
