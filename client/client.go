// Package client is the Go client of a raftq broker cluster: the producer
// API (Enqueue, GetJob, CancelJob, QueueStats), the calls workers build on
// (Fetch, ExtendLease, Ack, Nack), and the admin calls.
//
// A Client is given some broker addresses and finds the leader by itself:
// a NOT_LEADER answer names the leader and the call goes there; a broker
// that does not answer is skipped and the next one tried, with back-off,
// until the call's context ends. Every call is retried only when retrying
// is safe: Enqueue carries an idempotency key on every job (the client makes
// one when the caller did not), so a retry after an indeterminate outcome
// returns the first job instead of creating a second; Ack, Nack, CancelJob,
// and Redrive of a job whose first try already took effect succeed.
//
// Do gives the same retry to gRPC calls the client has no method for (the
// Admin and Cluster services); brokerctl runs its operator commands on it.
//
// EnqueueOne pipelines: concurrent calls share one EnqueueStream to the
// leader (stream.go), each job sent at once and answered as it commits.
// AckBatch, NackBatch and ExtendBatch settle many jobs in one call
// (batch.go), retrying the items a Raft group could not take yet as they
// retry whole calls; the worker SDK coalesces its settles into them.
// Consume opens a Consume stream on the leader (consume.go): streaming
// fetch with credit, with cancel notices for the jobs it pushed; the
// worker SDK takes its jobs that way.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/internal/bearer"
	"github.com/raftq/raftq/internal/tlsutil"
	"github.com/raftq/raftq/internal/tracectx"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// ErrClosed is returned by calls made after Close.
var ErrClosed = errors.New("client: closed")

// Options tune a Client.
type Options struct {
	// DialOptions are added to every connection (TLS, interceptors).
	DialOptions []grpc.DialOption
	// MinBackoff and MaxBackoff bound the wait between retries while no
	// broker answers (defaults 50ms and 1s).
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout applies to calls whose context has no deadline (default
	// 30s; Fetch adds its max_wait).
	CallTimeout time.Duration
	// TLS, when set, secures every connection: brokers are verified
	// against its RootCAs, and its client certificate (Certificates or
	// GetClientCertificate) is presented to brokers that ask for one.
	// LoadTLS builds one from files. Without it, connections are
	// plaintext.
	TLS *tls.Config
	// StreamWindow caps the EnqueueOne calls awaiting their answer on one
	// EnqueueStream (default 256); more wait for a free place.
	StreamWindow int
	// Token, when set, is sent as the bearer token of every call (the
	// brokers' auth); it needs TLS, so it never crosses a network in
	// clear.
	Token string
	// TracerProvider makes Enqueue's producer spans and puts their trace
	// context in the jobs (default: otel's global provider, a no-op unless
	// the program set one; with a no-op provider jobs carry no trace).
	TracerProvider trace.TracerProvider
}

// LoadTLS is a TLS configuration for Options.TLS (and results.WithTLS)
// from PEM files: caFile is the CA that signed the brokers' certificates;
// certFile and keyFile, optional, are the client's certificate and key,
// re-read at each new connection when they change on disk (rotation
// without a restart).
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	src, err := tlsutil.Load(tlsutil.Files{CA: caFile, Cert: certFile, Key: keyFile}, nil)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return src.ClientTLSConfig(), nil
}

// Client talks to a broker cluster. It is safe for concurrent use.
type Client struct {
	addrs []string
	opts  Options

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	leader string
	next   int
	closed bool

	probing atomic.Bool
	// routes is the route map of a cluster of several Raft groups (nil
	// until learned; routes.go), routeState its refresh bookkeeping.
	routes atomic.Pointer[routes]
	routeState
	// prod pipelines EnqueueOne calls onto streams (stream.go).
	prod producer
}

// New returns a client for the brokers at addrs (host:port of their gRPC
// API). No connection is made until the first call.
func New(addrs []string, opts Options) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("client: no broker addresses")
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Second
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	c := &Client{addrs: append([]string(nil), addrs...), opts: opts, conns: map[string]*grpc.ClientConn{}}
	c.closing, c.stopWatches = context.WithCancel(context.Background())
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.stopWatches()
	c.closeStreams()
	var errs []error
	for a, cc := range c.conns {
		errs = append(errs, cc.Close())
		delete(c.conns, a)
	}
	return errors.Join(errs...)
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	if c.closed {
		return nil, ErrClosed
	}
	creds := insecure.NewCredentials()
	if c.opts.TLS != nil {
		creds = credentials.NewTLS(c.opts.TLS)
	}
	base := []grpc.DialOption{}
	if c.opts.Token != "" {
		base = append(base, grpc.WithPerRPCCredentials(bearer.Credentials{Token: c.opts.Token}))
	}
	opts := append(append(base,
		// The caller's span context goes with each call (a no-op when
		// tracing is off), so the broker's spans join the caller's trace.
		grpc.WithChainUnaryInterceptor(c.learnLeader(addr), tracectx.UnaryClientInterceptor()),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	), c.opts.DialOptions...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

// target is the address to try next: the known leader, else the next
// address in rotation (guessed).
func (c *Client) target() (addr string, guessed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != "" {
		return c.leader, false
	}
	return c.addrs[c.next%len(c.addrs)], true
}

// probeLeader confirms the leader the client settled on by rotation.
// Brokers forward calls to their leader, so a follower answers successfully
// and the client would otherwise keep paying the extra hop. The probe asks
// the broker the client now calls what it is; a follower's Status names the
// leader, which the client switches to, and the probe goes on until the
// address it calls says it leads (or a few seconds pass). Right after an
// election a follower may not know the leader yet, or still name the dead
// one; the loop rides that out. One probe runs at a time, in the
// background.
func (c *Client) probeLeader() {
	if !c.probing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.probing.Store(false)
		for i := 0; i < 25; i++ {
			if i > 0 {
				time.Sleep(200 * time.Millisecond)
			}
			c.mu.Lock()
			addr, closed := c.leader, c.closed
			c.mu.Unlock()
			if closed {
				return
			}
			if addr == "" {
				continue // the rotation is still looking
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := c.Status(ctx, addr)
			cancel()
			if err != nil {
				continue
			}
			c.learnRoutes(st)
			if st.GetState() == "Leader" {
				return
			}
			leader := st.GetLeaderAddr()
			if leader == "" || leader == addr {
				continue
			}
			c.mu.Lock()
			if c.leader == addr {
				// Should the named leader be gone, its calls fail and the
				// rotation goes on from there.
				c.leader = leader
				if !containsAddr(c.addrs, leader) {
					c.addrs = append(c.addrs, leader)
				}
			}
			c.mu.Unlock()
		}
	}()
}

// leaderHeader is brokerd.LeaderHeader (not imported: the client must not
// depend on the server package).
const leaderHeader = "raftq-leader-addr"

// idempotentHeader marks an Enqueue whose every job has an idempotency key.
const idempotentHeader = "x-raftq-idempotent"

// learnLeader reads the header a follower sets on a call it forwarded and
// moves the client to the leader it names, saving the extra hop from the
// next call on.
func (c *Client) learnLeader(addr string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var md metadata.MD
		err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&md))...)
		if v := md.Get(groupLeaderHeader); len(v) == 1 {
			c.learnGroupLeader(v[0])
		}
		if v := md.Get(leaderHeader); len(v) == 1 && v[0] != "" && v[0] != addr {
			c.mu.Lock()
			if c.leader == "" || c.leader == addr {
				c.leader = v[0]
				if !containsAddr(c.addrs, v[0]) {
					c.addrs = append(c.addrs, v[0])
				}
			}
			c.mu.Unlock()
		}
		return err
	}
}

// adopt remembers addr, which just answered a call, as the leader unless
// the client learned of another leader while the call was in flight (a
// hint, or the leader probe): many calls run at once, and a slow answer
// from a forwarding follower must not undo what was learned since.
func (c *Client) adopt(addr string) {
	c.mu.Lock()
	if c.leader == "" {
		c.leader = addr
	}
	c.mu.Unlock()
}

// setLeader remembers addr as the leader. An address the client was not
// given (a broker that joined later, named in a NOT_LEADER hint) is added to
// the rotation, so the client can still reach it after the brokers it was
// given are gone.
func (c *Client) setLeader(addr string) {
	c.mu.Lock()
	c.leader = addr
	if addr != "" && !containsAddr(c.addrs, addr) {
		c.addrs = append(c.addrs, addr)
	}
	c.mu.Unlock()
}

func containsAddr(addrs []string, a string) bool {
	for _, x := range addrs {
		if x == a {
			return true
		}
	}
	return false
}

// Addrs returns the broker addresses the client rotates through: the ones
// it was given and any it has learned from leader hints.
func (c *Client) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.addrs...)
}

// failed forgets addr as leader and moves the rotation past it.
func (c *Client) failed(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == addr {
		c.leader = ""
	}
	if c.addrs[c.next%len(c.addrs)] == addr {
		c.next++
	}
}

// Leader returns the address the client currently believes leads, if any.
func (c *Client) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// Do runs call with the retry every method of the client uses, for the
// gRPC calls it has no method for (the Admin and Cluster services: purge,
// membership, leadership transfer, restore). call gets a connection to the
// broker the client believes leads; Do follows NOT_LEADER hints, skips
// brokers that do not answer, backs off, and stops when call succeeds,
// fails definitely, or ctx ends (without a deadline of its own, after
// Options.CallTimeout).
//
// call may run more than once: an UNAVAILABLE answer, INDETERMINATE ones
// included, runs it again. So it must be safe to repeat: a read, or a
// write whose retry finds its own effect (CancelJob, Redrive and PurgeDead
// by id answer success then, as Ack does); IsIndeterminate tells the
// caller that a failed write may have taken effect. brokerctl's operator
// commands are built on it.
func (c *Client) Do(ctx context.Context, call func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return c.do(ctx, 0, call)
}

// do runs call against the cluster, following leader hints and skipping
// brokers that do not answer, until it succeeds, fails definitely, or ctx
// ends.
func (c *Client) do(ctx context.Context, extra time.Duration, call func(context.Context, *grpc.ClientConn) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CallTimeout+extra)
		defer cancel()
	}
	backoff := c.opts.MinBackoff
	var last error
	for attempt := 0; ; attempt++ {
		// A call about a queue or job of a cluster of several groups goes
		// to its group's leader when the client knows it (routes.go).
		g, routed := c.groupOf(ctx)
		addr, guessed := "", false
		if routed {
			addr = c.groupLeader(g)
		}
		direct := addr != ""
		if !direct {
			addr, guessed = c.target()
		}
		cc, err := c.conn(addr)
		if err == nil {
			err = call(ctx, cc)
			if err == nil {
				if !direct {
					c.adopt(addr)
				}
				if guessed {
					c.probeLeader()
				}
				return nil
			}
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		last = err
		retry, hint := classify(err)
		if !retry {
			return err
		}
		switch {
		case routed && hint != "" && hint != addr:
			c.setGroupLeader(g, hint)
		case hint != "" && hint != addr && raftqerr.Detail(err).GetGroup() > 0:
			// The leader of another group than group 0, whose leader
			// the client's unrouted calls go to.
			c.setGroupLeader(int(raftqerr.Detail(err).GetGroup()), hint)
			c.failed(addr)
		case direct:
			c.setGroupLeader(g, "")
		case hint != "" && hint != addr:
			c.setLeader(hint)
		default:
			c.failed(addr)
		}
		// Go straight to a named leader once; back off otherwise.
		if n := len(c.Addrs()); hint == "" || hint == addr || attempt%n == n-1 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			case <-time.After(backoff):
			}
			if backoff *= 2; backoff > c.opts.MaxBackoff {
				backoff = c.opts.MaxBackoff
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		}
	}
}

// classify says whether an error is worth another try, and which address
// the broker named as leader.
func classify(err error) (retry bool, leaderHint string) {
	st, ok := status.FromError(err)
	if !ok {
		return true, "" // dial errors
	}
	switch st.Code() {
	case codes.Unavailable:
		_, hint := raftqerr.LeaderHint(err)
		return true, hint
	case codes.Canceled, codes.DeadlineExceeded:
		return false, ""
	}
	return false, ""
}

// IsIndeterminate reports whether err means the call may or may not have
// taken effect (raftqerr.IsIndeterminate).
func IsIndeterminate(err error) bool { return raftqerr.IsIndeterminate(err) }

// Reason returns the broker's ErrorDetail reason for err (NOT_FOUND,
// STALE_TOKEN, ...), or REASON_UNSPECIFIED (raftqerr.Reason).
func Reason(err error) raftqv1.ErrorDetail_Reason { return raftqerr.Reason(err) }

// Enqueue adds jobs atomically and returns one result per job. Jobs without
// an idempotency key get a fresh one, so that this call's own retries never
// create a job twice.
//
// The key is written into the caller's JobSpec, so a caller that retries an
// Enqueue that failed (an IsIndeterminate error, or a timeout of its own
// context) with the same specs still gets the first job back, never a
// second one: pass the same *JobSpec values again.
func (c *Client) Enqueue(ctx context.Context, jobs ...*raftqv1.JobSpec) (_ []*raftqv1.EnqueueResult, err error) {
	if err := withKeys(jobs); err != nil {
		return nil, err
	}
	ctx, span := c.startEnqueueSpan(ctx, jobs)
	defer func() { endSpan(span, err) }()
	req := &raftqv1.EnqueueRequest{Jobs: jobs}
	// Every job carries a key, so a proxy may retry this call on
	// UNAVAILABLE (envoy/envoy.yaml retries Enqueue only with this header).
	ctx = metadata.AppendToOutgoingContext(ctx, idempotentHeader, "1")
	if len(jobs) > 0 && jobs[0] != nil {
		ctx = withQueueRoute(ctx, jobs[0].GetQueue())
	}
	var resp *raftqv1.EnqueueResponse
	err = c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewBrokerClient(cc).Enqueue(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// withKeys gives every job without an idempotency key a fresh one.
// Time-ordered (UUIDv7), not random: the broker's store keeps keys in a
// B+tree ordered by key, and keys that arrive in order are appended to its
// last page, where random ones would dirty (and rewrite) a random page per
// job, a cost that grows with the number of keys remembered.
func withKeys(jobs []*raftqv1.JobSpec) error {
	for _, j := range jobs {
		if j != nil && j.IdempotencyKey == "" {
			id, err := uuid.NewV7()
			if err != nil {
				return err
			}
			j.IdempotencyKey = "auto-" + id.String()
		}
	}
	return nil
}

// Fetch long-polls for up to req.MaxJobs jobs. An empty answer means
// max_wait passed with nothing ready.
func (c *Client) Fetch(ctx context.Context, req *raftqv1.FetchRequest) ([]*raftqv1.Job, error) {
	var resp *raftqv1.FetchResponse
	if len(req.GetQueues()) > 0 {
		ctx = withQueueRoute(ctx, req.GetQueues()[0])
	}
	err := c.do(ctx, req.GetMaxWait().AsDuration(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewBrokerClient(cc).Fetch(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Jobs, nil
}

// ExtendLease extends a lease; the answer says whether the job was
// cancelled.
func (c *Client) ExtendLease(ctx context.Context, req *raftqv1.ExtendLeaseRequest) (*raftqv1.ExtendLeaseResponse, error) {
	var resp *raftqv1.ExtendLeaseResponse
	ctx = withJobRoute(ctx, req.GetJobId())
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewBrokerClient(cc).ExtendLease(ctx, req)
		return err
	})
	return resp, err
}

// Ack marks a leased job succeeded.
func (c *Client) Ack(ctx context.Context, jobID string, token uint64) error {
	req := &raftqv1.AckRequest{JobId: jobID, LeaseToken: token}
	ctx = withJobRoute(ctx, jobID)
	return c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := raftqv1.NewBrokerClient(cc).Ack(ctx, req)
		return err
	})
}

// Nack reports a failed attempt.
func (c *Client) Nack(ctx context.Context, req *raftqv1.NackRequest) (*raftqv1.NackResponse, error) {
	var resp *raftqv1.NackResponse
	ctx = withJobRoute(ctx, req.GetJobId())
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewBrokerClient(cc).Nack(ctx, req)
		return err
	})
	return resp, err
}

// GetJob reads a job (linearizable unless consistency is STALE).
func (c *Client) GetJob(ctx context.Context, jobID string, consistency raftqv1.Consistency) (*raftqv1.Job, error) {
	req := &raftqv1.GetJobRequest{JobId: jobID, Consistency: consistency}
	var resp *raftqv1.GetJobResponse
	ctx = withJobRoute(ctx, jobID)
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewBrokerClient(cc).GetJob(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Job, nil
}

// CancelJob cancels a job; a leased job's worker learns it on its next
// lease extension.
func (c *Client) CancelJob(ctx context.Context, jobID string) (raftqv1.JobState, error) {
	req := &raftqv1.CancelJobRequest{JobId: jobID}
	var resp *raftqv1.CancelJobResponse
	ctx = withJobRoute(ctx, jobID)
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewBrokerClient(cc).CancelJob(ctx, req)
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.State, nil
}

// QueueStats returns counts per state for the named queues (all when none).
func (c *Client) QueueStats(ctx context.Context, queues ...string) ([]*raftqv1.QueueStats, error) {
	req := &raftqv1.QueueStatsRequest{Queues: queues}
	var resp *raftqv1.QueueStatsResponse
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewBrokerClient(cc).QueueStats(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Queues, nil
}

// MoveQueue moves queue to Raft group toGroup of a cluster running
// several (docs/scale-out.md, "Moving a queue"): new jobs go there at
// once, and the jobs of its old group are served until none is left.
// It returns the queue's placement as the move starts.
func (c *Client) MoveQueue(ctx context.Context, queue string, toGroup uint32) (*raftqv1.Placement, error) {
	var out *raftqv1.Placement
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		res, err := raftqv1.NewAdminClient(cc).MoveQueue(ctx, &raftqv1.MoveQueueRequest{Queue: queue, ToGroup: toGroup})
		out = res.GetPlacement()
		return err
	})
	return out, err
}

// PartitionQueue spreads queue over the given Raft groups, one partition
// each (its own group is always one): jobs go to a partition by key, or
// in turn, and workers take from all. Once per queue, before producers
// use idempotency keys on it.
func (c *Client) PartitionQueue(ctx context.Context, queue string, groups ...uint32) (*raftqv1.Placement, error) {
	var out *raftqv1.Placement
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		res, err := raftqv1.NewAdminClient(cc).PartitionQueue(ctx, &raftqv1.PartitionQueueRequest{Queue: queue, Groups: groups})
		out = res.GetPlacement()
		return err
	})
	return out, err
}

// Placements lists the queues an operator moved, with the moves under
// way; other queues live in the group their names hash to.
func (c *Client) Placements(ctx context.Context) ([]*raftqv1.Placement, error) {
	var out []*raftqv1.Placement
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		res, err := raftqv1.NewAdminClient(cc).ListPlacements(ctx, &raftqv1.ListPlacementsRequest{})
		out = res.GetPlacements()
		return err
	})
	return out, err
}

// PauseQueue stops leasing from queue.
func (c *Client) PauseQueue(ctx context.Context, queue string) error {
	return c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := raftqv1.NewAdminClient(cc).PauseQueue(ctx, &raftqv1.PauseQueueRequest{Queue: queue})
		return err
	})
}

// ResumeQueue resumes leasing from queue.
func (c *Client) ResumeQueue(ctx context.Context, queue string) error {
	return c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := raftqv1.NewAdminClient(cc).ResumeQueue(ctx, &raftqv1.ResumeQueueRequest{Queue: queue})
		return err
	})
}

// Redrive moves dead jobs of queue back to ready (the listed ones, or up
// to limit of the oldest).
func (c *Client) Redrive(ctx context.Context, queue string, jobIDs []string, limit int32) ([]string, error) {
	req := &raftqv1.RedriveRequest{Queue: queue, JobIds: jobIDs, Limit: limit}
	var resp *raftqv1.RedriveResponse
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewAdminClient(cc).Redrive(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.JobIds, nil
}

// ListJobs lists a queue's jobs in one state, in id order after `after`.
func (c *Client) ListJobs(ctx context.Context, req *raftqv1.ListJobsRequest) (*raftqv1.ListJobsResponse, error) {
	var resp *raftqv1.ListJobsResponse
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewAdminClient(cc).ListJobs(ctx, req)
		return err
	})
	return resp, err
}

// Status asks one broker (by address) for its view of the cluster, without
// the state hash (StateHash is empty): finding the leader needs no hash, and
// hashing reads the broker's whole store.
func (c *Client) Status(ctx context.Context, addr string) (*raftqv1.StatusResponse, error) {
	return c.status(ctx, addr, &raftqv1.StatusRequest{})
}

// StatusWithHash is Status with the hash of the broker's FSM state, to
// compare replicas. It costs the broker a read of its whole store (about a
// second per million jobs) each time its state has changed.
func (c *Client) StatusWithHash(ctx context.Context, addr string) (*raftqv1.StatusResponse, error) {
	return c.status(ctx, addr, &raftqv1.StatusRequest{WithHash: true})
}

func (c *Client) status(ctx context.Context, addr string, req *raftqv1.StatusRequest) (*raftqv1.StatusResponse, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, err
	}
	return raftqv1.NewClusterClient(cc).Status(ctx, req)
}
