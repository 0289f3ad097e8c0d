// Package limits holds the rules and guards every raftq API shares: the
// name rule for queues and job types, the transport limits of a gRPC
// server (message and header sizes, handshake time), a cap on how long a
// call may run, and counted caps (Cap) on what a caller may hold at once:
// parked long polls per connection, principal and node, streams per
// principal and node, connections per node and per remote IP
// (listener.go). Each API's own validation (brokerd/validate.go,
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
	if !ValidName(s) {
		return fmt.Errorf("%s %q must match %s", what, s, NameRE)
	}
	return nil
}

// ValidName reports whether s matches NameRE, without the regexp: every
// job a broker takes has two names checked, and at tens of thousands of
// jobs a second the regexp engine was ~2 % of the leader's CPU.
// TestValidNameIsNameRE holds the two to the same answers.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == ':' || c == '-'):
		default:
			return false
		}
	}
	return true
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

// Cap counts holders of one resource (parked Fetches, streams,
// connections) per key, at most Max per key. A refusal names the cap and
// the configuration key that sets it, so an operator knows what to raise.
type Cap struct {
	max  int
	what string // "parked Fetches per principal"
	key  string // "limits.max_waiters_per_principal"
	mu   sync.Mutex
	n    map[string]int
}

// NewCap allows max holders per key (max <= 0: unlimited); what and
// configKey name the cap in refusals.
func NewCap(max int, what, configKey string) *Cap {
	return &Cap{max: max, what: what, key: configKey, n: map[string]int{}}
}

// Acquire takes a slot for key, or answers ResourceExhausted (nothing was
// taken; the caller may retry later). release gives the slot back; it may
// be called more than once.
func (c *Cap) Acquire(key string) (release func(), err error) {
	if c == nil || c.max <= 0 {
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.max {
		return nil, status.Errorf(codes.ResourceExhausted, "at most %d %s (%s)", c.max, c.what, c.key)
	}
	c.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			if c.n[key]--; c.n[key] <= 0 {
				delete(c.n, key)
			}
			c.mu.Unlock()
		})
	}, nil
}

// InFlight is the number of slots held over every key (tests, metrics).
func (c *Cap) InFlight() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, v := range c.n {
		t += v
	}
	return t
}

// Slot is one slot a call needs: a cap and the key it counts under. A nil
// Cap is no limit.
type Slot struct {
	Cap *Cap
	Key string
}

// AcquireAll takes every slot, in order, or none: when one cap is full it
// gives back those already taken and returns that cap's refusal.
func AcquireAll(slots ...Slot) (release func(), err error) {
	held := make([]func(), 0, len(slots))
	releaseAll := func() {
		for _, r := range held {
			r()
		}
	}
	for _, s := range slots {
		r, err := s.Cap.Acquire(s.Key)
		if err != nil {
			releaseAll()
			return nil, err
		}
		held = append(held, r)
	}
	return releaseAll, nil
}

// PerConn caps the calls of one kind (long polls) in flight per client
// connection.
type PerConn struct{ c *Cap }

// NewPerConn allows max calls per connection (max <= 0: unlimited).
func NewPerConn(max int) *PerConn {
	return &PerConn{c: NewCap(max, "long polls in flight per connection", "limits.max_waiters_per_conn")}
}

// Slot is the slot of ctx's connection, for AcquireAll.
func (p *PerConn) Slot(ctx context.Context) Slot {
	if p == nil {
		return Slot{}
	}
	return Slot{Cap: p.c, Key: connKey(ctx)}
}

// Acquire takes a slot for the call's connection, or answers
// ResourceExhausted (nothing was done; the client may retry later).
// release gives the slot back.
func (p *PerConn) Acquire(ctx context.Context) (release func(), err error) {
	return AcquireAll(p.Slot(ctx))
}

// InFlight is the number of calls holding a slot (tests).
func (p *PerConn) InFlight() int { return p.c.InFlight() }

// Streams caps the streaming calls in flight on a server, in all and per
// principal. principal names the caller of a stream (ok false: no
// per-principal cap applies, e.g. with auth off).
func Streams(perNode, perPrincipal *Cap, principal func(ctx context.Context) (name string, ok bool)) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		slots := []Slot{{Cap: perNode}}
		if name, ok := principal(ss.Context()); ok {
			slots = append(slots, Slot{Cap: perPrincipal, Key: name})
		}
		release, err := AcquireAll(slots...)
		if err != nil {
			return err
		}
		defer release()
		return handler(srv, ss)
	}
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

// Default caps of a node (brokerd's limits.* keys and SECURITY.md list
// them). They bound the memory one caller, or all callers together, can
// hold on a node: a parked Fetch costs some 15 KiB (20,000 of them took a
// leader from 45 to 358 MB), a stream or a connection a few KiB.
const (
	DefaultMaxWaitersPerConn      = 1024 // limits.max_waiters_per_conn
	DefaultMaxWaitersPerPrincipal = 1024 // limits.max_waiters_per_principal
	DefaultMaxWaiters             = 4096 // limits.max_waiters (per node)
	DefaultMaxStreamsPerPrincipal = 256  // limits.max_streams_per_principal
	DefaultMaxStreams             = 1024 // limits.max_streams (per node)
	DefaultMaxConns               = 4096 // limits.max_conns (per node)
	DefaultMaxConnsPerIP          = 1024 // limits.max_conns_per_ip
	// DefaultRatePerPrincipal and DefaultRateBurst are the per-principal
	// request rate (per node) when auth is on (auth.rate_limit,
	// auth.rate_burst): a batch is one request.
	DefaultRatePerPrincipal = 1000.0
	DefaultRateBurst        = 2000
)

// Anonymous is the principal callers of public methods (health checks)
// count under: they share one budget.
const Anonymous = "(anonymous)"
