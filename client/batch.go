package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The batch settle calls answer each item on its own. Their per-item
// errors come back as the same gRPC status errors the single calls return
// (with their ErrorDetail), so Reason and IsIndeterminate work on them
// unchanged. The error a batch method returns itself means no item has an
// answer: the call could not be made or applied (retried like every call,
// then given up), or it was refused whole (over the broker's item limit).
// Retrying a batch is safe: an ack or nack repeated with the same token
// answers success, an extension repeated extends again.

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

// batch makes one batch call of n items and returns its results and
// their errors, one per item, in order.
func batch[Resp any, R itemResult](ctx context.Context, c *Client, n int,
	call func(context.Context, raftqv1.BrokerClient) (Resp, error), results func(Resp) []R,
) ([]R, []error, error) {
	var resp Resp
	if err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = call(ctx, raftqv1.NewBrokerClient(cc))
		return err
	}); err != nil {
		return nil, nil, err
	}
	rs := results(resp)
	if len(rs) != n {
		return nil, nil, fmt.Errorf("client: broker answered %d results for %d items", len(rs), n)
	}
	errs := make([]error, n)
	for i, r := range rs {
		errs[i] = ItemErr(r.GetError())
	}
	return rs, errs, nil
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
// one entry per item, in order: nil when that job was acked.
func (c *Client) AckBatch(ctx context.Context, items []*raftqv1.AckRequest) (errs []error, err error) {
	req := &raftqv1.AckBatchRequest{Items: items}
	if len(items) > 0 {
		// Routed by the first job: a batch over several groups is split
		// by the broker that takes it.
		ctx = withJobRoute(ctx, items[0].GetJobId())
	}
	_, errs, err = batch(ctx, c, len(items), func(ctx context.Context, b raftqv1.BrokerClient) (*raftqv1.AckBatchResponse, error) {
		return b.AckBatch(ctx, req)
	}, (*raftqv1.AckBatchResponse).GetResults)
	return errs, err
}

// NackBatch reports many failed attempts in one call and one Raft entry.
// For each item, in order, either its answer or its error is set.
func (c *Client) NackBatch(ctx context.Context, items []*raftqv1.NackRequest) ([]*raftqv1.NackResponse, []error, error) {
	req := &raftqv1.NackBatchRequest{Items: items}
	if len(items) > 0 {
		ctx = withJobRoute(ctx, items[0].GetJobId())
	}
	rs, errs, err := batch(ctx, c, len(items), func(ctx context.Context, b raftqv1.BrokerClient) (*raftqv1.NackBatchResponse, error) {
		return b.NackBatch(ctx, req)
	}, (*raftqv1.NackBatchResponse).GetResults)
	return responses(rs), errs, err
}

// ExtendBatch extends many leases in one call and one Raft entry. For each
// item, in order, either its answer (new deadline, cancel flag) or its
// error is set.
func (c *Client) ExtendBatch(ctx context.Context, items []*raftqv1.ExtendLeaseRequest) ([]*raftqv1.ExtendLeaseResponse, []error, error) {
	req := &raftqv1.ExtendLeaseBatchRequest{Items: items}
	if len(items) > 0 {
		ctx = withJobRoute(ctx, items[0].GetJobId())
	}
	rs, errs, err := batch(ctx, c, len(items), func(ctx context.Context, b raftqv1.BrokerClient) (*raftqv1.ExtendLeaseBatchResponse, error) {
		return b.ExtendLeaseBatch(ctx, req)
	}, (*raftqv1.ExtendLeaseBatchResponse).GetResults)
	return responses(rs), errs, err
}
