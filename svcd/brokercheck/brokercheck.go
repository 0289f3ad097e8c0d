// Package brokercheck verifies a result with the brokers before svcd
// stores it: the job's queue and the lease token a worker may write with
// come from the broker leader's record of the job (a linearizable GetJob),
// never from the caller's claim. Without it a worker token for one queue
// could store a result for another queue's job by claiming its own queue,
// and a made-up token above the real one would fence out the real worker.
//
// The GetJob is made with the caller's own bearer token (when auth is on),
// so the broker's queue check applies to the caller too, and svcd checks
// the caller's queue patterns against the job's real queue itself as well.
package brokercheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/svcd/service"
	"github.com/raftq/raftq/svcd/store"
)

// DefaultTimeout bounds one verification (the client's retries across
// brokers and leader changes included) when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config says which brokers to ask and how.
type Config struct {
	// Brokers are the brokers' gRPC addresses (host:port), or a single
	// resolver target such as etcdresolver.BrokersTarget with its
	// DialOptions.
	Brokers     []string
	DialOptions []grpc.DialOption
	// TLS secures the connections (svcd's own CA and certificate); nil
	// is plaintext.
	TLS *tls.Config
	// Auth is svcd's authorizer; when set the caller's token is
	// forwarded to the broker and the caller's queue patterns are checked
	// against the job's real queue. Nil: auth off.
	Auth *auth.Authorizer
	// Timeout bounds one verification (default DefaultTimeout); when it
	// passes the result is refused as ErrBrokerUnavailable.
	Timeout time.Duration
}

// Checker is a service.Verifier backed by a broker client. Safe for
// concurrent use.
type Checker struct {
	cl      *client.Client
	auth    *auth.Authorizer
	timeout time.Duration
}

var _ service.Verifier = (*Checker)(nil)

// New returns a Checker; no connection is made until the first check.
func New(cfg Config) (*Checker, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("brokercheck: no broker addresses")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	// No Options.Token: each call carries its caller's token.
	cl, err := client.New(cfg.Brokers, client.Options{TLS: cfg.TLS, DialOptions: cfg.DialOptions, CallTimeout: cfg.Timeout})
	if err != nil {
		return nil, fmt.Errorf("brokercheck: %w", err)
	}
	return &Checker{cl: cl, auth: cfg.Auth, timeout: cfg.Timeout}, nil
}

// Close closes the broker connections.
func (c *Checker) Close() error { return c.cl.Close() }

// VerifyResult refuses, with nothing written, a result whose job the
// broker does not know (service.ErrUnknownJob), whose job's queue the
// caller may not use (auth permission denied), whose queue is not the
// job's (invalid argument), whose lease token is above the newest one the
// broker issued for the job (forged: permission denied) or below it (a
// lease the broker has replaced: store.ErrStaleToken, so the worker
// drops the attempt). A token equal to the job's current or last lease
// passes, and the store's fencing rules decide as before. When the
// broker cannot answer in time the result is refused with
// service.ErrBrokerUnavailable: the worker retries, it never acks
// without a stored result.
func (c *Checker) VerifyResult(ctx context.Context, r store.Result) error {
	cctx := ctx
	if c.auth != nil {
		// gRPC callers: their incoming authorization header; HTTP
		// callers' tokens were put in the outgoing metadata by svcd's
		// HTTP authentication. Only with auth on (so TLS is on): a token
		// is never forwarded in clear.
		cctx = auth.ForwardContext(ctx)
	}
	cctx, cancel := context.WithTimeout(cctx, c.timeout)
	defer cancel()
	job, err := c.cl.GetJob(cctx, r.JobID, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return brokerError(ctx, r.JobID, err)
	}
	if c.auth != nil {
		p, ok := auth.FromContext(ctx)
		if !ok {
			return &auth.Error{Kind: auth.ErrUnauthenticated, Msg: "missing bearer token"}
		}
		if err := c.auth.Check(ctx, p, auth.Access{Roles: auth.RoleWorker, Queues: []string{job.GetQueue()}}); err != nil {
			return fmt.Errorf("job %s: %w", r.JobID, err)
		}
	}
	if r.Queue != job.GetQueue() {
		return &service.InvalidError{Violations: []service.Violation{{
			Field:       "queue",
			Description: fmt.Sprintf("is %q but the broker has job %s in queue %q", r.Queue, r.JobID, job.GetQueue()),
		}}}
	}
	switch last := job.GetLeaseToken(); {
	case r.LeaseToken > last:
		return &auth.Error{Kind: auth.ErrPermissionDenied,
			Msg: fmt.Sprintf("lease token %d was never issued for job %s (the broker's newest is %d)", r.LeaseToken, r.JobID, last)}
	case r.LeaseToken < last:
		return fmt.Errorf("%w: lease token %d of job %s was replaced by the broker's lease %d", store.ErrStaleToken, r.LeaseToken, r.JobID, last)
	}
	return nil
}

// brokerError turns a failed GetJob into the refusal svcd answers.
func brokerError(ctx context.Context, jobID string, err error) error {
	if ctx.Err() != nil { // the caller gave up: not the broker's fault
		return ctx.Err()
	}
	switch status.Code(err) {
	case codes.NotFound, codes.InvalidArgument: // an id the broker refuses names no job either
		return fmt.Errorf("%w: the broker has no job %s", service.ErrUnknownJob, jobID)
	case codes.PermissionDenied:
		return &auth.Error{Kind: auth.ErrPermissionDenied, Msg: "the broker refused job " + jobID + " to the caller: " + status.Convert(err).Message()}
	case codes.Unauthenticated:
		return &auth.Error{Kind: auth.ErrPermissionDenied, Msg: "the broker did not accept the caller's token: " + status.Convert(err).Message()}
	}
	return fmt.Errorf("%w: job %s: %v", service.ErrBrokerUnavailable, jobID, err)
}
