package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// Consumer is an open Consume stream on the leader: streaming fetch. Give
// it credit (how many more jobs the caller can take) and receive leased
// jobs, at most as many as granted, and notices about the jobs it
// received (cancelled, lease lost). Settle the jobs with Ack, Nack,
// ExtendLease or their batches, as fetched ones. Credit and CloseSend may
// be called while another goroutine is in Recv.
type Consumer struct {
	c      *Client
	addr   string
	cancel context.CancelFunc
	st     raftqv1.Broker_ConsumeClient
	// MaxCredit is the most credit the broker lets the stream hold.
	MaxCredit int32

	sendMu sync.Mutex
}

// Consume opens a Consume stream on the leader, following leader hints
// and retrying as every call does, and returns once the leader accepted
// the open frame. ctx bounds the opening only: the stream lives until it
// ends, Close is called or the client closes. A broker without Consume
// answers codes.Unimplemented (use Fetch then); a bad open frame
// InvalidArgument; a refused queue PermissionDenied.
func (c *Client) Consume(ctx context.Context, open *raftqv1.ConsumeOpen) (*Consumer, error) {
	var out *Consumer
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := c.openConsumer(ctx, cc, open)
		if err == nil {
			out = s
		}
		return err
	})
	return out, err
}

// openConsumer opens the stream on cc and waits (up to ctx) for the
// leader's answer to the open frame, so that NOT_LEADER and refusals come
// back here, where the client's retries handle them.
func (c *Client) openConsumer(ctx context.Context, cc *grpc.ClientConn, open *raftqv1.ConsumeOpen) (*Consumer, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	type opened struct {
		st  raftqv1.Broker_ConsumeClient
		max int32
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		st, err := raftqv1.NewBrokerClient(cc).Consume(sctx)
		if err != nil {
			ch <- opened{err: err}
			return
		}
		if err := st.Send(&raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Open{Open: open}}); err != nil && !errors.Is(err, io.EOF) {
			ch <- opened{err: err}
			return
		}
		r, err := st.Recv()
		if err != nil {
			ch <- opened{err: err}
			return
		}
		o := r.GetOpened()
		if o == nil {
			ch <- opened{err: fmt.Errorf("client: consume: the broker's first frame was not opened")}
			return
		}
		ch <- opened{st: st, max: o.GetMaxCredit()}
	}()
	var o opened
	select {
	case o = <-ch:
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
	if o.err != nil {
		cancel()
		return nil, o.err
	}
	addr := ""
	for a, x := range c.connsSnapshot() {
		if x == cc {
			addr = a
		}
	}
	return &Consumer{c: c, addr: addr, cancel: cancel, st: o.st, MaxCredit: o.max}, nil
}

// connsSnapshot is a copy of the client's connections by address.
func (c *Client) connsSnapshot() map[string]*grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*grpc.ClientConn, len(c.conns))
	for a, cc := range c.conns {
		out[a] = cc
	}
	return out
}

// Credit grants n more jobs (n >= 1; the credit left may not go over
// MaxCredit).
func (s *Consumer) Credit(n int32) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.st.Send(&raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Credit{Credit: n}})
}

// Recv returns the next frame: a job (GetJob) or a notice (GetNotice).
// When the stream ends it returns io.EOF after CloseSend, else the
// broker's status: NOT_LEADER (the client then calls the leader it names
// next), a refused frame, or a transport error. Jobs received are leased:
// one the caller does not settle comes back when its lease expires.
func (s *Consumer) Recv() (*raftqv1.ConsumeResponse, error) {
	r, err := s.st.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		// Move the client to the leader a NOT_LEADER end names, or off a
		// broker that broke the stream, so the next Consume goes there.
		if _, hint := raftqerr.LeaderHint(err); hint != "" && hint != s.addr {
			s.c.setLeader(hint)
		} else if retry, _ := classify(err); retry && s.addr != "" {
			s.c.failed(s.addr)
		}
	}
	return r, err
}

// CloseSend tells the broker no more credit comes: it pushes the jobs it
// already leased for the stream and ends it (Recv then returns io.EOF).
func (s *Consumer) CloseSend() error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.st.CloseSend()
}

// Close ends the stream at once. Jobs the broker pushed that were not
// received come back when their leases expire.
func (s *Consumer) Close() { s.cancel() }
