package auth

import (
	"context"
	"crypto/x509"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/raftq/raftq/internal/bearer"
	"github.com/raftq/raftq/internal/tlsutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// AuthorizationKey is the metadata key (and HTTP header, lower-cased)
// that carries "Bearer <token>" (internal/bearer sends it).
const AuthorizationKey = bearer.MetadataKey

// Rule is what one gRPC method needs.
type Rule struct {
	// Public methods need no authentication (health checks).
	Public bool
	// Roles: the caller must hold one of them (0: any authenticated
	// caller; admins always pass).
	Roles Roles
	// Scope extracts the queues and jobs a request touches (nil: none).
	Scope func(req any) Access
	// Audit writes an audit line for every call (refusals of every
	// method are written anyway).
	Audit bool
}

// Rules maps full method names ("/raftq.v1.Broker/Enqueue") to rules;
// methods not listed need the admin role.
type Rules map[string]Rule

var adminOnly = Rule{Roles: RoleAdmin, Audit: true}

func (r Rules) rule(method string) Rule {
	if x, ok := r[method]; ok {
		return x
	}
	return adminOnly
}

// Health and reflection, shared by both servers.
var common = Rules{
	"/grpc.health.v1.Health/Check": {Public: true},
	"/grpc.health.v1.Health/Watch": {Public: true},
	"/grpc.health.v1.Health/List":  {Public: true},
}

func merge(rs ...Rules) Rules {
	out := Rules{}
	for _, r := range rs {
		for k, v := range r {
			out[k] = v
		}
	}
	return out
}

func jobs(ids ...string) Access { return Access{Jobs: ids} }

// BrokerRules is brokerd's table: producers enqueue, read and cancel jobs
// of their queues; workers fetch from their queues and settle (and read)
// the jobs they leased; Cluster.Status is open to every principal (clients
// use it to find the leader), and so is xDS's ADS (the same leaders);
// Join and Remove (a node leaving) are for nodes and admins; everything
// else (the Admin service, leadership transfer, backup, restore,
// reflection) is for admins. Membership and admin calls are audited.
var BrokerRules = merge(common, Rules{
	"/raftq.v1.Broker/Enqueue": {Roles: RoleProducer, Scope: func(req any) Access {
		var a Access
		for _, j := range req.(*raftqv1.EnqueueRequest).GetJobs() {
			a.Queues = append(a.Queues, j.GetQueue())
		}
		return a
	}},
	// A stream is checked on role when it opens; each job's queue is
	// checked as it arrives (brokerd/stream.go).
	"/raftq.v1.Broker/EnqueueStream": {Roles: RoleProducer},
	// Consume is Fetch as a stream: its role is checked when it opens,
	// the queues of its open frame as that frame arrives
	// (brokerd/consume.go).
	"/raftq.v1.Broker/Consume": {Roles: RoleWorker},
	"/raftq.v1.Broker/Fetch": {Roles: RoleWorker, Scope: func(req any) Access {
		// queue_weights may name the queues on its own: check those too.
		r := req.(*raftqv1.FetchRequest)
		qs := slices.Clone(r.GetQueues())
		for _, q := range slices.Sorted(maps.Keys(r.GetQueueWeights())) {
			qs = append(qs, q)
		}
		return Access{Queues: qs}
	}},
	"/raftq.v1.Broker/ExtendLease": {Roles: RoleWorker, Scope: func(req any) Access {
		return jobs(req.(*raftqv1.ExtendLeaseRequest).GetJobId())
	}},
	"/raftq.v1.Broker/Ack": {Roles: RoleWorker, Scope: func(req any) Access {
		return jobs(req.(*raftqv1.AckRequest).GetJobId())
	}},
	"/raftq.v1.Broker/Nack": {Roles: RoleWorker, Scope: func(req any) Access {
		return jobs(req.(*raftqv1.NackRequest).GetJobId())
	}},
	// The batch settle calls check each item's job in the handler
	// (brokerd/batch.go), with the same rule as the single calls, so that
	// one refused item is answered on its own instead of failing the rest.
	"/raftq.v1.Broker/AckBatch":         {Roles: RoleWorker},
	"/raftq.v1.Broker/NackBatch":        {Roles: RoleWorker},
	"/raftq.v1.Broker/ExtendLeaseBatch": {Roles: RoleWorker},
	"/raftq.v1.Broker/GetJob": {Roles: RoleProducer | RoleWorker, Scope: func(req any) Access {
		return jobs(req.(*raftqv1.GetJobRequest).GetJobId())
	}},
	"/raftq.v1.Broker/CancelJob": {Roles: RoleProducer, Scope: func(req any) Access {
		return jobs(req.(*raftqv1.CancelJobRequest).GetJobId())
	}},
	"/raftq.v1.Broker/QueueStats": {Roles: RoleProducer | RoleWorker, Scope: func(req any) Access {
		qs := req.(*raftqv1.QueueStatsRequest).GetQueues()
		return Access{Queues: qs, AllQueues: len(qs) == 0}
	}},
	"/raftq.v1.Cluster/Status": {Roles: RoleProducer | RoleWorker | RoleAdmin | RoleNode},
	// Where each group's leader is: what Status says, kept up to date.
	"/raftq.v1.Cluster/WatchRoutes": {Roles: RoleProducer | RoleWorker | RoleAdmin | RoleNode},
	// xDS (brokerd --xds): the leaders' addresses, as Cluster.Status
	// tells them, so any authenticated principal (Envoy with a token or a
	// node certificate, a proxyless client with its own token) may read
	// them; unauthenticated callers may not map the cluster. Both forms
	// of ADS are listed, as the server registers both.
	"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources": {},
	"/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources":  {},
	// A read the dashboard makes on every page: admin only, not audited.
	"/raftq.v1.Admin/ListJobs": {Roles: RoleAdmin},
	// Schedule reads, for the CLI and dashboard: admin only, not audited
	// (Put, Pause, Resume and Delete are admin only and audited).
	"/raftq.v1.Schedules/GetSchedule":   {Roles: RoleAdmin},
	"/raftq.v1.Schedules/ListSchedules": {Roles: RoleAdmin},
	// A queue move's steps, which the broker driving it (group 0's
	// leader) and the new group's leader send other brokers on their own,
	// with their node certificates (brokerd/movequeue.go): a node could
	// write any of them into a group's log as a Raft peer already, so
	// allowing them adds no power. Audited, but ExportQueue, a read asked
	// every few hundred milliseconds while a queue drains.
	"/raftq.v1.Admin/SealQueue":       {Roles: RoleNode | RoleAdmin, Audit: true},
	"/raftq.v1.Admin/ImportKeys":      {Roles: RoleNode | RoleAdmin, Audit: true},
	"/raftq.v1.Admin/ImportSchedules": {Roles: RoleNode | RoleAdmin, Audit: true},
	"/raftq.v1.Admin/ExportQueue":     {Roles: RoleNode | RoleAdmin},
	"/raftq.v1.Cluster/Join":          {Roles: RoleNode | RoleAdmin, Audit: true},
	// A node leaving (--leave-on-terminate, `brokerd leave`) removes
	// itself with its own certificate.
	"/raftq.v1.Cluster/Remove": {Roles: RoleNode | RoleAdmin, Audit: true},
})

// ResultsRules is svcd's table: every Results method needs an
// authenticated producer, worker or admin; which queues and jobs it may
// touch is checked by svcd's endpoints (one place for gRPC and HTTP).
var ResultsRules = merge(common, Rules{
	"/raftq.v1.Results/StoreResult":  {Roles: RoleWorker},
	"/raftq.v1.Results/GetResult":    {Roles: RoleProducer | RoleWorker},
	"/raftq.v1.Results/ListResults":  {Roles: RoleProducer | RoleWorker},
	"/raftq.v1.Results/ListAttempts": {Roles: RoleProducer | RoleWorker},
})

// ServerOptions are the gRPC server options that enforce rules: a tap
// that authenticates and rate limits each call before its request is read
// (a refused caller costs no decoding), and interceptors that check the
// method's role, queues and jobs. None when a is nil (auth off).
func (a *Authorizer) ServerOptions(rules Rules) []grpc.ServerOption {
	if a == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.InTapHandle(a.tap(rules)),
		grpc.ChainUnaryInterceptor(a.unary(rules)),
		grpc.ChainStreamInterceptor(a.stream(rules)),
	}
}

// Authenticate finds the principal of a gRPC call: its bearer token, or,
// without one, a node certificate.
func (a *Authorizer) Authenticate(ctx context.Context) (*Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(AuthorizationKey)
	if len(vals) > 1 {
		return nil, unauthenticated("more than one authorization header")
	}
	if len(vals) == 1 {
		tok, ok := bearer.Parse(vals[0])
		if !ok {
			return nil, unauthenticated(`authorization must be "Bearer <token>"`)
		}
		return a.Verify(tok)
	}
	if p := a.nodePrincipal(peerCert(ctx)); p != nil {
		return p, nil
	}
	return nil, unauthenticated("missing bearer token")
}

func peerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return tlsutil.PeerCertificate(ti.State)
}

func (a *Authorizer) tap(rules Rules) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		r := rules.rule(info.FullMethodName)
		if r.Public {
			return ctx, nil
		}
		ctx = metadata.NewIncomingContext(ctx, info.Header)
		p, err := a.Authenticate(ctx)
		if err == nil {
			err = a.Allow(p)
		}
		if err != nil {
			a.refused(ctx, p, info.FullMethodName, nil, err)
			return ctx, err
		}
		return NewContext(ctx, p), nil
	}
}

// authorize checks one call of method with request req.
func (a *Authorizer) authorize(ctx context.Context, r Rule, req any) (*Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		// Not through the tap (a server built without it): do it here.
		var err error
		if p, err = a.Authenticate(ctx); err != nil {
			return nil, err
		}
	}
	acc := Access{Roles: r.Roles}
	if r.Scope != nil && req != nil {
		s := r.Scope(req)
		acc.Queues, acc.AllQueues, acc.Jobs = s.Queues, s.AllQueues, s.Jobs
	}
	return p, a.Check(ctx, p, acc)
}

func (a *Authorizer) unary(rules Rules) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		r := rules.rule(info.FullMethod)
		if r.Public {
			return handler(ctx, req)
		}
		start := time.Now()
		p, err := a.authorize(ctx, r, req)
		if err != nil {
			a.refused(ctx, p, info.FullMethod, req, err)
			return nil, err
		}
		resp, err := handler(NewContext(ctx, p), req)
		if r.Audit {
			a.auditCall(ctx, p, info.FullMethod, req, err, time.Since(start))
		}
		return resp, err
	}
}

func (a *Authorizer) stream(rules Rules) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		r := rules.rule(info.FullMethod)
		if r.Public {
			return handler(srv, ss)
		}
		start := time.Now()
		ctx := ss.Context()
		// Streams are checked on role alone: their requests arrive later.
		p, err := a.authorize(ctx, Rule{Roles: r.Roles}, nil)
		if err != nil {
			a.refused(ctx, p, info.FullMethod, nil, err)
			return err
		}
		err = handler(srv, &principalStream{ServerStream: ss, ctx: NewContext(ctx, p)})
		if r.Audit {
			a.auditCall(ctx, p, info.FullMethod, nil, err, time.Since(start))
		}
		return err
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// ForwardContext copies the caller's authorization from an incoming call
// into ctx's outgoing metadata, so a call forwarded to another node (a
// follower's to its leader, the admin API's to its own gRPC API) is made
// as the original caller, never as the forwarding node.
func ForwardContext(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(AuthorizationKey); len(v) == 1 {
		return metadata.AppendToOutgoingContext(ctx, AuthorizationKey, v[0])
	}
	return ctx
}

// WithToken returns ctx whose outgoing calls carry token as the bearer.
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, AuthorizationKey, "Bearer "+token)
}

// Code is the gRPC code of err (for audit lines).
func code(err error) string { return status.Code(err).String() }

// PeerIsNode reports whether a gRPC call's connection presented a
// verified certificate of a cluster node (whatever token it carries).
// False when a is nil.
func (a *Authorizer) PeerIsNode(ctx context.Context) bool {
	return a != nil && a.nodePrincipal(peerCert(ctx)) != nil
}
