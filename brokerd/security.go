package brokerd

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/tlsutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// This file wires TLS, authentication and the per-API limits into the
// node: what the gRPC server enforces, and how the node calls others
// (forwarding, joining, its admin API) as itself or as its caller.

// caps are the node's counted resource caps (internal/limits), beyond
// the per-connection waiter cap.
type caps struct {
	waitersPerPrincipal, waiters *limits.Cap
	streamsPerPrincipal, streams *limits.Cap
	conns, connsPerIP            *limits.Cap
}

func newCaps(l Limits) *caps {
	return &caps{
		waitersPerPrincipal: limits.NewCap(l.MaxWaitersPerPrincipal, "parked Fetches per principal", "limits.max_waiters_per_principal"),
		waiters:             limits.NewCap(l.MaxWaiters, "parked Fetches on this node", "limits.max_waiters"),
		streamsPerPrincipal: limits.NewCap(l.MaxStreamsPerPrincipal, "streams per principal", "limits.max_streams_per_principal"),
		streams:             limits.NewCap(l.MaxStreams, "streams on this node", "limits.max_streams"),
		conns:               limits.NewCap(l.MaxConns, "connections on this node", "limits.max_conns"),
		connsPerIP:          limits.NewCap(l.MaxConnsPerIP, "connections per remote IP", "limits.max_conns_per_ip"),
	}
}

// openSecurity loads the TLS material and the authorizer (nothing when
// they are off), the audit sink, and the resource caps.
func (n *Node) openSecurity() error {
	n.waiters = limits.NewPerConn(n.cfg.Limits.MaxWaitersPerConn)
	n.caps = newCaps(n.cfg.Limits)
	if n.cfg.TLS.Enabled() {
		src, err := tlsutil.Load(n.cfg.TLS.Files, n.log)
		if err != nil {
			return err
		}
		n.tls = src
	}
	ac := n.cfg.Auth
	ac.Logger = n.log.With("component", "auth")
	ac.JobQueue = n.jobQueue
	if ac.Enabled() {
		if ac.Audit == nil {
			ac.Audit = auth.NewAuditLog(os.Stderr, auth.AuditLimits{})
		}
		ac.Audit = ac.Audit.With(slog.String("node", n.cfg.NodeID))
	}
	a, err := auth.New(ac)
	if err != nil {
		return err
	}
	n.auth = a
	return nil
}

// jobQueue finds a job's queue in this node's FSM for authorization. A
// queue never changes, so a follower's possibly stale copy is as good as
// the leader's; a job this node has not seen yet passes here and is
// checked again by the leader the call is forwarded to.
func (n *Node) jobQueue(_ context.Context, id string) (string, bool, error) {
	f := n.fsm
	if n.multi() {
		// A host authorizes calls for all its groups: the job is in the
		// group its id names (one this host does not run passes here).
		g, err := placement.Job(id, n.cfg.Groups)
		if err != nil {
			return "", false, nil
		}
		gn := n.groupNode(g)
		if gn == nil {
			return "", false, nil
		}
		f = gn.fsm
	}
	j, ok := f.Get(id)
	if !ok {
		return "", false, nil
	}
	return j.Queue, true, nil
}

// grpcSecurity are the gRPC server's credentials and auth options, then
// the stream caps (after auth, which names the principal).
func (n *Node) grpcSecurity() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if n.tls != nil {
		opts = append(opts, grpc.Creds(n.tls.ServerCredentials(n.clientAuth())))
	}
	opts = append(opts, n.auth.ServerOptions(auth.BrokerRules)...)
	return append(opts, grpc.ChainStreamInterceptor(limits.Streams(n.caps.streams, n.caps.streamsPerPrincipal, n.capPrincipal)))
}

// capPrincipal is the name a call counts under for per-principal caps:
// its principal, or limits.Anonymous for public calls. With auth off there
// are no principals and no per-principal caps.
func (n *Node) capPrincipal(ctx context.Context) (string, bool) {
	if n.auth == nil {
		return "", false
	}
	if p, ok := auth.FromContext(ctx); ok {
		return p.Name, true
	}
	return limits.Anonymous, true
}

// limitListener caps the gRPC API's connections (limits.max_conns,
// limits.max_conns_per_ip); refusals are logged at most once a second.
func (n *Node) limitListener(l net.Listener) net.Listener {
	every := rate.Sometimes{Interval: time.Second}
	return limits.LimitListener(l, n.caps.conns, n.caps.connsPerIP, func(remote net.Addr, err error) {
		every.Do(func() { n.log.Warn("connection refused", "remote", remote.String(), "err", err) })
	})
}

// clientAuth is what the API listeners ask of client certificates.
func (n *Node) clientAuth() tls.ClientAuthType {
	if n.cfg.TLS.RequireClientCert {
		return tls.RequireAndVerifyClientCert
	}
	return tls.VerifyClientCertIfGiven
}

// grpcLimits are the transport limits: a request may carry a full batch
// plus its envelope; answers (snapshots come in chunks) stay under 64 MiB.
func (n *Node) grpcLimits() []grpc.ServerOption {
	return limits.GRPC{
		MaxRecvMsgBytes:      n.cfg.Limits.MaxBatchBytes + (1 << 20),
		MaxSendMsgBytes:      64 << 20,
		MaxConcurrentStreams: n.cfg.Limits.MaxConcurrentStreams,
	}.ServerOptions()
}

// requestDeadline caps each unary call: MaxRequestTime, plus the wait a
// Fetch asked for.
func (n *Node) requestDeadline(method string, req any) time.Duration {
	d := n.cfg.Limits.MaxRequestTime
	if d <= 0 {
		return 0
	}
	if f, ok := req.(*raftqv1.FetchRequest); ok {
		d += min(f.GetMaxWait().AsDuration(), n.cfg.Limits.MaxFetchWait)
	}
	return d
}

// acquireWaiter takes a long-poll slot for the caller's connection, its
// principal and this node. Calls forwarded by another node are exempt (it
// forwards all its clients over one connection, and counted them on their
// own connections, principals and node); with auth on, only a verified
// node may claim that.
func (n *Node) acquireWaiter(ctx context.Context) (func(), error) {
	if wasForwarded(ctx) && (n.auth == nil || n.auth.PeerIsNode(ctx)) {
		return func() {}, nil
	}
	slots := []limits.Slot{n.waiters.Slot(ctx), {Cap: n.caps.waiters}}
	if name, ok := n.capPrincipal(ctx); ok {
		slots = append(slots, limits.Slot{Cap: n.caps.waitersPerPrincipal, Key: name})
	}
	return limits.AcquireAll(slots...)
}

// PeerCredentials are the transport credentials for calls to other
// nodes and to this node's own API (the admin HTTP API's calls): TLS with
// this node's certificate (re-read at every handshake), or plaintext when
// TLS is off.
func (n *Node) PeerCredentials() credentials.TransportCredentials {
	if n.tls != nil {
		return n.tls.ClientCredentials()
	}
	return insecure.NewCredentials()
}

// ServerTLS is the node's TLS server configuration for other listeners
// (the admin HTTP API), with the gRPC API's client certificate policy, or
// nil without TLS.
func (n *Node) ServerTLS(nextProtos ...string) *tls.Config {
	if n.tls == nil {
		return nil
	}
	return n.tls.ServerConfig(n.clientAuth(), nextProtos...)
}

// Authorizer is the node's authorizer (tokens, roles, rate limits, audit)
// for other listeners (the admin HTTP API), or nil with auth off.
func (n *Node) Authorizer() *auth.Authorizer { return n.auth }
