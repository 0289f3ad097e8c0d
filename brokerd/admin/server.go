// Package admin is a broker node's operator surface over HTTP: a JSON API
// (health, readiness, cluster membership and leadership, backup and
// restore, queues, jobs, dead letters), Prometheus /metrics, /debug/pprof,
// and a server-rendered dashboard. Every brokerd node serves it.
//
// The API is a thin layer over the node's own gRPC API, called over
// loopback: validation, leader forwarding and error classification live in
// one place (brokerd), and a write sent to a follower's admin API reaches
// the leader the same way a gRPC client's would. See DESIGN.md and
// openapi.yaml.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/dispatch"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
)

// Node is what the admin API needs from its broker node beyond the gRPC
// API; *brokerd.Node implements it, and brokerd/daemon passes one. (An
// interface: it is all the API reads of a node, and the timeout and
// readiness tests serve a fake node whose gRPC API is nowhere.)
type Node interface {
	// ID is the node's Raft server id.
	ID() string
	// GRPCAddr is where the node's gRPC API listens.
	GRPCAddr() string
	// FSM is the node's state machine, read locally for queue rates.
	FSM() *fsm.FSM
	// Ready is nil when the node is a member of a cluster with a known
	// leader, else the reason it is not.
	Ready() error
	// RaftStats is hashicorp/raft's description of the node.
	RaftStats() map[string]string
	// WriteSnapshot streams the node's FSM state (a backup) to w.
	WriteSnapshot(w io.Writer) (appliedIndex uint64, err error)
	// QueueGroups are the groups holding a queue's jobs by the placement
	// table, the one taking new jobs first (nil with one group).
	QueueGroups(queue string) []uint32
}

// Config configures the admin server. Zero values take defaults.
type Config struct {
	// Addr is the listen address (host:port; port 0 picks a free one).
	Addr string
	// Node is the broker node served.
	Node Node
	// Metrics is what /metrics serves (the node's registry).
	Metrics prometheus.Gatherer
	// SvcdAddr, when set, is the results service whose attempt history the
	// job pages show.
	SvcdAddr string
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// MaxBodyBytes caps JSON request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxRestoreBytes caps a restore upload (default 4 GiB).
	MaxRestoreBytes int64
	// RequestTimeout bounds each API request (default 30s). Backup,
	// restore and profiling run without it.
	RequestTimeout time.Duration
	// TLS, when set, makes the server speak HTTPS only (HTTP/1.1).
	TLS *tls.Config
	// Credentials secure the server's gRPC calls to its node and to svcd
	// (default plaintext): with TLS on, the node's own certificate.
	Credentials credentials.TransportCredentials
	// FSMs, when the node runs several Raft groups, are every group's
	// FSM (default: Node.FSM() alone). The queue rates and the charts read
	// them all: each queue lives in one group, and group 0's state alone
	// would show the other groups' queues idle.
	FSMs []*fsm.FSM
	// Limits, when set, are the live per-queue dispatch limits (etcd's
	// queue settings) the queue pages show; nil shows none configured.
	Limits dispatch.Limits
	// Auth, when set, requires the admin role of every request except
	// /, /healthz, /readyz, /openapi.yaml and the dashboard's static
	// files (see auth.go). The caller's token goes on with the gRPC calls
	// the request makes, which check it again; writes, backups and
	// profiling are written to the audit log.
	Auth *auth.Authorizer
}

// Server is a running admin HTTP server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	lis     net.Listener
	http    *http.Server
	conn    *grpc.ClientConn
	broker  raftqv1.BrokerClient
	admin   raftqv1.AdminClient
	cluster raftqv1.ClusterClient
	results *results.Client
	rates   *rateSampler
	hist    *history
	probe   *prober
	httpm   *httpMetrics

	// groups is the cluster's Raft group count once read (groupCount).
	groups atomic.Uint32

	closeOnce sync.Once
}

// New binds cfg.Addr and starts serving. The gRPC connection to the node
// is lazy, so New succeeds before the node's API answers.
func New(cfg Config) (*Server, error) {
	if cfg.Node == nil {
		return nil, errors.New("admin: no node")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxRestoreBytes <= 0 {
		cfg.MaxRestoreBytes = 4 << 30
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Credentials == nil {
		cfg.Credentials = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(cfg.Node.GRPCAddr(),
		grpc.WithTransportCredentials(cfg.Credentials),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("admin: dial own gRPC API: %w", err)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("component", "admin"), conn: conn,
		broker: raftqv1.NewBrokerClient(conn), admin: raftqv1.NewAdminClient(conn), cluster: raftqv1.NewClusterClient(conn),
		rates: newRateSampler(fsms(cfg), 2*time.Second, time.Minute),
		httpm: newHTTPMetrics(),
	}
	// The dashboard's charts: 450 samples of the rate sampler's 2 s tick
	// are the last 15 minutes.
	s.hist = newHistory(cfg.Metrics, 450)
	s.rates.observe = s.hist.observe
	s.probe = newProber(s, 2*time.Second)
	if cfg.SvcdAddr != "" {
		if s.results, err = results.Dial(cfg.SvcdAddr, grpc.WithTransportCredentials(cfg.Credentials)); err != nil {
			conn.Close()
			return nil, fmt.Errorf("admin: svcd %s: %w", cfg.SvcdAddr, err)
		}
	}
	// The admin API's own HTTP metrics go into the node's registry when it
	// is one we can register with.
	if reg, ok := cfg.Metrics.(prometheus.Registerer); ok {
		if err := reg.Register(s.httpm); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				s.closeClients()
				return nil, err
			}
		}
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		s.closeClients()
		return nil, fmt.Errorf("admin listen %s: %w", cfg.Addr, err)
	}
	if cfg.TLS != nil {
		lis = tls.NewListener(lis, cfg.TLS)
	}
	s.lis = lis
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.rates.start()
	s.probe.start()
	go func() {
		if err := s.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin serve", "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Shutdown stops accepting, lets requests in flight finish until ctx ends,
// then closes the connections it holds.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	s.closeClients()
	return err
}

// Close stops at once, cutting requests in flight.
func (s *Server) Close() error {
	err := s.http.Close()
	s.closeClients()
	return err
}

func (s *Server) closeClients() {
	s.closeOnce.Do(func() {
		s.rates.stop()
		s.probe.stop()
		_ = s.conn.Close()
		if s.results != nil {
			_ = s.results.Close()
		}
	})
}

// Routes lists the paths of the HTTP API (not the dashboard's pages, its
// static files or /debug/pprof) in OpenAPI path syntax, so a test can check
// that openapi.yaml describes every one of them.
func Routes() []string {
	s := &Server{cfg: Config{Metrics: prometheus.NewRegistry()}, httpm: newHTTPMetrics()}
	var out []string
	seen := map[string]bool{}
	_ = chi.Walk(s.routes().(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if route == "/" || strings.HasPrefix(route, "/ui") || strings.HasPrefix(route, "/debug") || seen[route] {
			return nil
		}
		seen[route] = true
		out = append(out, route)
		return nil
	})
	sort.Strings(out)
	return out
}

// fsms are the FSMs the rates and charts read: cfg.FSMs, or the node's.
func fsms(cfg Config) []*fsm.FSM {
	if len(cfg.FSMs) > 0 {
		return cfg.FSMs
	}
	return []*fsm.FSM{cfg.Node.FSM()}
}
