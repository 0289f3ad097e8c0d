package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// The batch settle calls answer each item on its own. Their per-item
// errors come back as the same gRPC status errors the single calls return
// (with their ErrorDetail), so Reason and IsIndeterminate work on them
// unchanged. The error a batch method returns itself means no item has an
// answer: the call could not be made or applied (retried like every call,
// then given up), or it was refused whole (over the broker's item limit).
// Retrying a batch is safe: an ack or nack repeated with the same token
// answers success, an extension repeated extends again.
//
// Items are retried too, not only whole calls. On a cluster of several
// Raft groups the broker splits a batch by its jobs' groups, and a group
// that cannot take its part right now (its leader is moving: a transfer
// by the leader balancer, an election after a crash) answers each of its
// items NOT_LEADER or UNAVAILABLE while the other groups' items succeed.
// Given back as they are, those errors would have a worker drop its acks,
// and the jobs run again once their leases expire; so the items whose
// error is retryable by the rule of whole calls (classify) are sent
// again, alone, until they get a final answer or the call's context
// ends. An item still unanswered then keeps its last error, wrapped with
// the context's.

// ItemErr turns a batch item's ItemError into the status error the single
// call would have returned; nil when e is nil.
func ItemErr(e *raftqv1.ItemError) error {
	if e == nil {
		return nil
	}
	code := codes.Code(e.GetCode())
	if code == codes.OK {
		code = codes.Unknown // never sent; do not turn a refusal into success
	}
	st := status.New(code, e.GetMessage())
	if e.GetDetail() != nil {
		if ds, err := st.WithDetails(e.GetDetail()); err == nil {
			st = ds
		}
	}
	return st.Err()
}

// itemResult is what every batch result has: its item's error.
type itemResult interface{ GetError() *raftqv1.ItemError }

// batch makes a batch call of items and returns their results and
// errors, one per item, in order; call sends the items given it in one
// request (the whole batch, then the items being retried), jobID names
// an item's job, by which the call is routed (its first item's).
//
// The call as a whole is retried by c.do. Then each item whose own answer
// is retryable (classify: UNAVAILABLE, so NOT_LEADER and INDETERMINATE)
// is sent again, with the others still pending in a request of their own,
// after the client's back-off (MinBackoff doubling up to MaxBackoff),
// until none is left or ctx ends (without a deadline of its own, after
// Options.CallTimeout, as c.do). A leader an item's NOT_LEADER names for
// its group goes into the route map first, so the retry goes straight
// there. An item keeps the first final answer it got (success, or a
// refusal such as STALE_TOKEN); an item still pending when ctx ends keeps
// its last retryable error, wrapped with ctx's (Reason, IsIndeterminate
// and errors.Is still see both).
//
// An INDETERMINATE item may have taken effect; sending it again is what a
// whole call answered INDETERMINATE gets too, and finds its own effect:
// an ack repeated with the same token answers success, a nack the job's
// state, an extension extends again. Should the lease have ended in
// between (expired, the job leased again under another token), the
// repeat is refused STALE_TOKEN or WRONG_STATE, which the worker SDK
// treats as a lost lease (worker/task.go, leaseGone): it does not settle
// the job, and the job runs again, as it would have without the retry.
func batch[Item any, Resp any, R itemResult](ctx context.Context, c *Client, items []Item, jobID func(Item) string,
	call func(context.Context, raftqv1.BrokerClient, []Item) (Resp, error), results func(Resp) []R,
) ([]R, []error, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CallTimeout)
		defer cancel()
	}
	rs, errs := make([]R, len(items)), make([]error, len(items))
	pending := make([]int, len(items)) // the items to send, by index
	for i := range pending {
		pending[i] = i
	}
	backoff := c.opts.MinBackoff
	for first := true; ; first = false {
		sent := items
		if !first {
			sent = make([]Item, len(pending))
			for k, i := range pending {
				sent[k] = items[i]
			}
		}
		cctx := ctx
		if len(sent) > 0 {
			// A batch over several groups is split by the broker that
			// takes it.
			cctx = withJobRoute(ctx, jobID(sent[0]))
		}
		var resp Resp
		err := c.do(cctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
			resp, err = call(ctx, raftqv1.NewBrokerClient(cc), sent)
			return err
		})
		var got []R
		if err == nil {
			if got = results(resp); len(got) != len(sent) {
				err = fmt.Errorf("client: broker answered %d results for %d items", len(got), len(sent))
			}
		}
		if err != nil {
			if first {
				return nil, nil, err
			}
			// A retry failed whole: the items answered before keep their
			// answers; the pending ones keep their last error when ctx
			// ended, else get this call's.
			for _, i := range pending {
				if ctx.Err() != nil {
					errs[i] = expired(ctx, errs[i])
				} else {
					errs[i] = err
				}
			}
			return rs, errs, nil
		}
		again := pending[:0]
		for k, i := range pending {
			rs[i], errs[i] = got[k], ItemErr(got[k].GetError())
			if errs[i] == nil {
				continue
			}
			if retry, hint := classify(errs[i]); retry {
				again = append(again, i)
				c.learnItemLeader(jobID(items[i]), errs[i], hint)
			}
		}
		if pending = again; len(pending) == 0 {
			return rs, errs, nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			for _, i := range pending {
				errs[i] = expired(ctx, errs[i])
			}
			return rs, errs, nil
		case <-t.C:
		}
		backoff = min(2*backoff, c.opts.MaxBackoff)
	}
}

// learnItemLeader records the leader a batch item's NOT_LEADER answer
// names (hint; nothing when it names none) as the leader of its group:
// the one the answer names, else the group of the item's job. The item's
// retry is routed there, as c.do routes a call after a hint.
func (c *Client) learnItemLeader(jobID string, err error, hint string) {
	if hint == "" {
		return
	}
	g, ok := int(raftqerr.Detail(err).GetGroup()), true
	if g == 0 {
		// Group 0, or an answer that names none: the job's group.
		g, ok = c.groupOf(withJobRoute(context.Background(), jobID))
	}
	if ok {
		c.setGroupLeader(g, hint)
	}
}

// expired is the error of an item still pending when ctx ended: ctx's
// error and the item's last one, both visible to errors.Is and to the
// ErrorDetail readers (Reason, IsIndeterminate, status.FromError).
func expired(ctx context.Context, last error) error {
	return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
}

// responses are the answers of batch results (nil for a refused item).
func responses[T any, R interface{ GetResponse() T }](rs []R) []T {
	if rs == nil {
		return nil
	}
	out := make([]T, len(rs))
	for i, r := range rs {
		out[i] = r.GetResponse()
	}
	return out
}

// AckBatch acks many leased jobs in one call and one Raft entry. errs has
// one entry per item, in order: nil when that job was acked. Items a
// group could not take yet (NOT_LEADER, UNAVAILABLE) are sent again until
// ctx ends (batch).
func (c *Client) AckBatch(ctx context.Context, items []*raftqv1.AckRequest) (errs []error, err error) {
	_, errs, err = batch(ctx, c, items, (*raftqv1.AckRequest).GetJobId,
		func(ctx context.Context, b raftqv1.BrokerClient, items []*raftqv1.AckRequest) (*raftqv1.AckBatchResponse, error) {
			return b.AckBatch(ctx, &raftqv1.AckBatchRequest{Items: items})
		}, (*raftqv1.AckBatchResponse).GetResults)
	return errs, err
}

// NackBatch reports many failed attempts in one call and one Raft entry.
// For each item, in order, either its answer or its error is set. Items
// are retried as AckBatch's.
func (c *Client) NackBatch(ctx context.Context, items []*raftqv1.NackRequest) ([]*raftqv1.NackResponse, []error, error) {
	rs, errs, err := batch(ctx, c, items, (*raftqv1.NackRequest).GetJobId,
		func(ctx context.Context, b raftqv1.BrokerClient, items []*raftqv1.NackRequest) (*raftqv1.NackBatchResponse, error) {
			return b.NackBatch(ctx, &raftqv1.NackBatchRequest{Items: items})
		}, (*raftqv1.NackBatchResponse).GetResults)
	return responses(rs), errs, err
}

// ExtendBatch extends many leases in one call and one Raft entry. For each
// item, in order, either its answer (new deadline, cancel flag) or its
// error is set. Items are retried as AckBatch's.
func (c *Client) ExtendBatch(ctx context.Context, items []*raftqv1.ExtendLeaseRequest) ([]*raftqv1.ExtendLeaseResponse, []error, error) {
	rs, errs, err := batch(ctx, c, items, (*raftqv1.ExtendLeaseRequest).GetJobId,
		func(ctx context.Context, b raftqv1.BrokerClient, items []*raftqv1.ExtendLeaseRequest) (*raftqv1.ExtendLeaseBatchResponse, error) {
			return b.ExtendLeaseBatch(ctx, &raftqv1.ExtendLeaseBatchRequest{Items: items})
		}, (*raftqv1.ExtendLeaseBatchResponse).GetResults)
	return responses(rs), errs, err
}
