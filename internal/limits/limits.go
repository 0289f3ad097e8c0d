// Package limits holds the rules and guards every raftq API shares: the
// name rule for queues and job types, the transport limits of a gRPC
// server (message and header sizes, handshake time), a cap on how long a
// call may run, and a cap on the long polls one client connection may
// park. Each API's own validation (brokerd/validate.go,
// svcd/service) builds on these, so a limit is written down once.
package limits

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// NameRE is the rule for queue and job type names: short, printable, safe
// in URLs, metric labels, etcd keys and file names.
var NameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

// CheckName reports a name that breaks NameRE; what says which name
// ("queue", "type").
func CheckName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if !NameRE.MatchString(s) {
		return fmt.Errorf("%s %q must match %s", what, s, NameRE)
	}
	return nil
}

// GRPC are a gRPC server's transport limits.
type GRPC struct {
	// MaxRecvMsgBytes and MaxSendMsgBytes bound one message.
	MaxRecvMsgBytes int
	MaxSendMsgBytes int
	// MaxHeaderListBytes bounds a request's metadata (default 1 MiB;
	// gRPC's own is 16 MiB).
	MaxHeaderListBytes uint32
	// MaxConcurrentStreams bounds the calls in flight on one connection
	// (0: gRPC's default, unbounded). Brokers forward a follower's
	// clients over one connection to the leader, so keep it generous.
	MaxConcurrentStreams uint32
	// ConnectionTimeout bounds the TLS handshake and HTTP/2 preface of a
	// new connection (default 10s; gRPC's own is 120s).
	ConnectionTimeout time.Duration
}

// ServerOptions are the options enforcing g.
func (g GRPC) ServerOptions() []grpc.ServerOption {
	if g.MaxHeaderListBytes == 0 {
		g.MaxHeaderListBytes = 1 << 20
	}
	if g.ConnectionTimeout <= 0 {
		g.ConnectionTimeout = 10 * time.Second
	}
	opts := []grpc.ServerOption{
		grpc.MaxHeaderListSize(g.MaxHeaderListBytes),
		grpc.ConnectionTimeout(g.ConnectionTimeout),
	}
	if g.MaxRecvMsgBytes > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(g.MaxRecvMsgBytes))
	}
	if g.MaxSendMsgBytes > 0 {
		opts = append(opts, grpc.MaxSendMsgSize(g.MaxSendMsgBytes))
	}
	if g.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(g.MaxConcurrentStreams))
	}
	return opts
}

// Deadline caps how long a unary call may run: maxFor returns the cap of
// a method (0: none). A call whose client set no deadline, or a later one,
// gets the cap, so no request holds a goroutine (and a parked waiter)
// forever.
func Deadline(maxFor func(method string, req any) time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if d := maxFor(info.FullMethod, req); d > 0 {
			if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
		}
		return handler(ctx, req)
	}
}

// PerConn caps the calls of one kind (long polls) in flight per client
// connection.
type PerConn struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// NewPerConn allows max calls per connection (max <= 0: unlimited).
func NewPerConn(max int) *PerConn { return &PerConn{max: max, n: map[string]int{}} }

// Acquire takes a slot for the call's connection, or answers
// ResourceExhausted (nothing was done; the client may retry later).
// release gives the slot back.
func (p *PerConn) Acquire(ctx context.Context) (release func(), err error) {
	if p == nil || p.max <= 0 {
		return func() {}, nil
	}
	key := connKey(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[key] >= p.max {
		return nil, status.Errorf(codes.ResourceExhausted, "at most %d long polls in flight per connection", p.max)
	}
	p.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.n[key]--; p.n[key] <= 0 {
				delete(p.n, key)
			}
			p.mu.Unlock()
		})
	}, nil
}

// InFlight is the number of calls holding a slot (tests).
func (p *PerConn) InFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := 0
	for _, v := range p.n {
		t += v
	}
	return t
}

func connKey(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return ""
	}
	k := pr.Addr.String()
	if pr.LocalAddr != nil {
		k += "|" + pr.LocalAddr.String()
	}
	return k
}
