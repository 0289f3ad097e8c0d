package worker

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// maxCoalesce caps the items of one batch call; the broker's own limit
// (Limits.MaxSettleItems) defaults to 1000.
const maxCoalesce = 256

// coalescer sends the items of concurrent callers (acks, nacks or lease
// extensions of different jobs) in shared batch calls, by group commit:
// the first item starts a sender goroutine at once; items that arrive
// while its call is in flight wait, and all of them go in the next call
// when it returns. No timer: an idle worker sends a lone item
// immediately, and a busy one pays one broker call (and one Raft entry)
// for many jobs. The sender ends when nothing is waiting.
type coalescer[Req, Resp any] struct {
	// send makes one batch call: per-item answers and errors, or an error
	// for the whole call.
	send func(ctx context.Context, reqs []Req) ([]Resp, []error, error)

	mu      sync.Mutex
	waiting []*coalesced[Req, Resp]
	busy    bool
}

type coalesced[Req, Resp any] struct {
	ctx  context.Context
	req  Req
	done chan coalescedOut[Resp] // buffered: the sender never blocks
}

type coalescedOut[Resp any] struct {
	resp Resp
	err  error
}

// do sends req in the next batch call and returns its own answer, or
// ctx's error when ctx ends first (the item is then not sent, if it has
// not been yet).
func (c *coalescer[Req, Resp]) do(ctx context.Context, req Req) (Resp, error) {
	p := &coalesced[Req, Resp]{ctx: ctx, req: req, done: make(chan coalescedOut[Resp], 1)}
	c.mu.Lock()
	c.waiting = append(c.waiting, p)
	if !c.busy {
		c.busy = true
		go c.loop()
	}
	c.mu.Unlock()
	select {
	case o := <-p.done:
		return o.resp, o.err
	case <-ctx.Done():
		var zero Resp
		return zero, ctx.Err()
	}
}

// loop sends what is waiting until nothing is.
func (c *coalescer[Req, Resp]) loop() {
	for {
		c.mu.Lock()
		var items []*coalesced[Req, Resp]
		rest := c.waiting[:0]
		for _, p := range c.waiting {
			switch {
			case p.ctx.Err() != nil: // its caller gave up: do not send it
			case len(items) < maxCoalesce:
				items = append(items, p)
			default:
				rest = append(rest, p)
			}
		}
		clear(c.waiting[len(rest):])
		c.waiting = rest
		if len(items) == 0 {
			c.busy = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.flush(items)
	}
}

// flush makes one call for items, bounded by the latest of their
// deadlines (each caller still stops waiting at its own).
func (c *coalescer[Req, Resp]) flush(items []*coalesced[Req, Resp]) {
	ctx := context.WithoutCancel(items[0].ctx)
	var latest time.Time
	for _, p := range items {
		dl, ok := p.ctx.Deadline()
		if !ok {
			latest = time.Time{}
			break
		}
		if dl.After(latest) {
			latest = dl
		}
	}
	if !latest.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	reqs := make([]Req, len(items))
	for i, p := range items {
		reqs[i] = p.req
	}
	resps, errs, err := c.send(ctx, reqs)
	for i, p := range items {
		if err != nil {
			p.done <- coalescedOut[Resp]{err: err}
			continue
		}
		p.done <- coalescedOut[Resp]{resp: resps[i], err: errs[i]}
	}
}

// orSingles makes a batch call, or, against a broker too old to know it
// (Unimplemented), the single calls one by one.
func orSingles[Req, Resp any](ctx context.Context, reqs []Req,
	batch func(context.Context, []Req) ([]Resp, []error, error),
	single func(context.Context, Req) (Resp, error),
) ([]Resp, []error, error) {
	resps, errs, err := batch(ctx, reqs)
	if status.Code(err) != codes.Unimplemented {
		return resps, errs, err
	}
	resps, errs = make([]Resp, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		resps[i], errs[i] = single(ctx, r)
	}
	return resps, errs, nil
}

// settlers are a worker's coalescers of acks, nacks and lease extensions.
type settlers struct {
	acks    coalescer[*raftqv1.AckRequest, struct{}]
	nacks   coalescer[*raftqv1.NackRequest, *raftqv1.NackResponse]
	extends coalescer[*raftqv1.ExtendLeaseRequest, *raftqv1.ExtendLeaseResponse]
}

func newSettlers(c *client.Client) *settlers {
	s := &settlers{}
	s.acks.send = func(ctx context.Context, reqs []*raftqv1.AckRequest) ([]struct{}, []error, error) {
		return orSingles(ctx, reqs, func(ctx context.Context, reqs []*raftqv1.AckRequest) ([]struct{}, []error, error) {
			errs, err := c.AckBatch(ctx, reqs)
			return make([]struct{}, len(reqs)), errs, err
		}, func(ctx context.Context, r *raftqv1.AckRequest) (struct{}, error) {
			return struct{}{}, c.Ack(ctx, r.JobId, r.LeaseToken)
		})
	}
	s.nacks.send = func(ctx context.Context, reqs []*raftqv1.NackRequest) ([]*raftqv1.NackResponse, []error, error) {
		return orSingles(ctx, reqs, c.NackBatch, c.Nack)
	}
	s.extends.send = func(ctx context.Context, reqs []*raftqv1.ExtendLeaseRequest) ([]*raftqv1.ExtendLeaseResponse, []error, error) {
		return orSingles(ctx, reqs, c.ExtendBatch, c.ExtendLease)
	}
	return s
}
