// Package server wires svcd together: store, service, endpoints, the gRPC
// and HTTP listeners, readiness, and an orderly shutdown. cmd/svcd is a thin
// main around it, and tests start whole servers in-process with it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/tlsutil"
	"github.com/raftq/raftq/svcd/brokercheck"
	"github.com/raftq/raftq/svcd/service"
	"github.com/raftq/raftq/svcd/store"
	"github.com/raftq/raftq/svcd/transport"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"gorm.io/gorm/logger"
)

// Config is every setting of svcd, in one struct; cmd/svcd fills it from
// flags (Viper comes later).
type Config struct {
	// ListenGRPC and ListenHTTP are host:port; port 0 picks a free one.
	ListenGRPC string
	ListenHTTP string

	// DB is "sqlite" (default) or "postgres"; DSN is PostgreSQL's
	// connection string; DataDir holds svcd.db for SQLite.
	DB      string
	DSN     string
	DataDir string
	// Database pool settings (0: the store's defaults).
	DBMaxOpenConns    int
	DBMaxIdleConns    int
	DBConnMaxLifetime time.Duration

	// MaxOutputBytes caps a result's output (default 1 MiB).
	MaxOutputBytes int
	// RateLimit is requests per second over all endpoints (0: unlimited);
	// RateBurst is the bucket size (default RateLimit, at least 1).
	RateLimit float64
	RateBurst int

	// ReadyInterval is how often the gRPC health status is refreshed from
	// a database ping (default 2s).
	ReadyInterval time.Duration
	// StartTimeout bounds connecting and migrating at start (default 30s).
	StartTimeout time.Duration
	// ShutdownTimeout bounds draining requests at shutdown (default 15s).
	ShutdownTimeout time.Duration

	// TLS, when its files are set, serves both APIs over TLS (the files
	// are re-read when they change). RequireClientCert makes clients
	// present a certificate from TLS.CA.
	TLS               tlsutil.Files
	RequireClientCert bool
	// Auth, when enabled, requires a bearer token on both APIs; the
	// endpoints authorize each call by role and queue. Its JobQueue is
	// set by the server (the stored result's queue).
	Auth auth.Config
	// Brokers is how every result is verified with the brokers before it
	// is stored (svcd/brokercheck): the job's queue and lease token come
	// from the broker, not the caller. Required unless Brokers.Disabled.
	Brokers BrokerCheck

	Logger log.Logger
}

// BrokerCheck configures result verification with the brokers.
type BrokerCheck struct {
	// Disabled stores results on the caller's word (queue and lease
	// token unchecked): only for a svcd whose writers are all trusted,
	// such as tests and tools that run svcd without brokers. A svcd with
	// neither Addrs nor Disabled does not start.
	Disabled bool
	// Addrs are the brokers' gRPC addresses, or one resolver target with
	// DialOptions (etcd discovery). TLS, when svcd has it, is svcd's own
	// CA and certificate.
	Addrs       []string
	DialOptions []grpc.DialOption
	// Timeout bounds one verification (default brokercheck.DefaultTimeout);
	// past it the write is refused UNAVAILABLE and the worker retries.
	Timeout time.Duration
}

// Defaults returns the settings `svcd` runs with when given no flags.
func Defaults() Config {
	return Config{
		ListenGRPC:      "127.0.0.1:7400",
		ListenHTTP:      "127.0.0.1:7401",
		DB:              "sqlite",
		DataDir:         "data/svcd",
		MaxOutputBytes:  service.DefaultMaxOutputBytes,
		ReadyInterval:   2 * time.Second,
		StartTimeout:    30 * time.Second,
		ShutdownTimeout: 15 * time.Second,
	}
}

// ServiceName is the gRPC health service name of the results API.
const ServiceName = "raftq.v1.Results"

// Server is a running svcd.
type Server struct {
	cfg     Config
	logger  log.Logger
	store   *store.Store
	checker *brokercheck.Checker // nil: verification disabled

	grpcLis, httpLis net.Listener
	grpcSrv          *grpc.Server
	httpSrv          *http.Server
	health           *health.Server

	stopReady    chan struct{}
	readyDone    chan struct{}
	shuttingDown chan struct{}
	serveErr     chan error
	started      atomic.Bool
	shutdownOnce sync.Once
	shutdownErr  error
}

// New opens the database (running the migrations), builds the service and
// binds both listeners, so a nil error means svcd can serve. Nothing is
// served until Start.
func New(ctx context.Context, cfg Config) (*Server, error) {
	d := Defaults()
	if cfg.ReadyInterval <= 0 {
		cfg.ReadyInterval = d.ReadyInterval
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = d.StartTimeout
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = d.ShutdownTimeout
	}
	if cfg.MaxOutputBytes <= 0 {
		cfg.MaxOutputBytes = d.MaxOutputBytes
	}
	lg := cfg.Logger
	if lg == nil {
		lg = log.NewNopLogger()
	}
	s := &Server{
		cfg: cfg, logger: lg,
		stopReady: make(chan struct{}), readyDone: make(chan struct{}),
		shuttingDown: make(chan struct{}), serveErr: make(chan error, 2),
	}

	// 1. The database first: without it there is nothing to serve.
	openCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	st, err := store.Open(openCtx, store.Config{
		Driver:          cfg.DB,
		DSN:             cfg.DSN,
		DataDir:         cfg.DataDir,
		MaxOpenConns:    cfg.DBMaxOpenConns,
		MaxIdleConns:    cfg.DBMaxIdleConns,
		ConnMaxLifetime: cfg.DBConnMaxLifetime,
		Logger:          logger.New(gormWriter{level.Warn(lg)}, logger.Config{SlowThreshold: 500 * time.Millisecond, LogLevel: logger.Warn, IgnoreRecordNotFoundError: true}),
	})
	if err != nil {
		return nil, err
	}
	s.store = st

	// 2. Service and endpoints with their middlewares.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := service.Options{Logger: lg, Metrics: service.NewMetrics(reg)}
	if cfg.RateLimit > 0 {
		burst := cfg.RateBurst
		if burst <= 0 {
			burst = max(1, int(cfg.RateLimit))
		}
		opts.Limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), burst)
	}
	sec, err := newSecurity(cfg, st, lg)
	if err != nil {
		st.Close()
		return nil, err
	}
	svcCfg := service.Config{MaxOutputBytes: cfg.MaxOutputBytes}
	if s.checker, err = newChecker(cfg.Brokers, sec); err != nil {
		st.Close()
		return nil, err
	}
	if s.checker != nil {
		svcCfg.Verifier = s.checker
	}
	svc := service.New(st, svcCfg)
	opts.Auth = sec.auth
	eps := service.MakeEndpoints(svc, opts)

	// 3. Transports. Health starts NOT_SERVING until the first ping.
	s.health = health.NewServer()
	s.setServing(false)
	s.grpcSrv = transport.NewGRPCServer(eps, s.health, transport.GRPCConfig{MaxOutputBytes: cfg.MaxOutputBytes, Logger: lg, ServerOptions: sec.grpcOptions()})
	s.httpSrv = &http.Server{
		Handler: transport.NewHTTPHandler(eps, transport.HTTPConfig{
			MaxOutputBytes: cfg.MaxOutputBytes,
			Ready:          s.Ready,
			Metrics:        promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
			Logger:         lg,
			Auth:           sec.auth,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}

	// 4. Listeners last, so a failure above leaves no port bound.
	if s.grpcLis, err = net.Listen("tcp", cfg.ListenGRPC); err != nil {
		s.closeBackends()
		return nil, fmt.Errorf("listen grpc %s: %w", cfg.ListenGRPC, err)
	}
	if s.httpLis, err = net.Listen("tcp", cfg.ListenHTTP); err != nil {
		s.grpcLis.Close()
		s.closeBackends()
		return nil, fmt.Errorf("listen http %s: %w", cfg.ListenHTTP, err)
	}
	if sec.tls != nil {
		s.httpLis = tls.NewListener(s.httpLis, sec.tls.ServerConfig(sec.clientAuth, "http/1.1"))
	}
	return s, nil
}

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// Store exposes the store, for tests that check what was written.
func (s *Server) Store() *store.Store { return s.store }

// Start serves both APIs and starts the readiness loop; it returns at once.
func (s *Server) Start() {
	if !s.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		if err := s.grpcSrv.Serve(s.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.serveErr <- fmt.Errorf("grpc: %w", err)
		}
	}()
	go func() {
		if err := s.httpSrv.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- fmt.Errorf("http: %w", err)
		}
	}()
	s.refreshReady()
	go s.readyLoop()
	_ = level.Info(s.logger).Log("msg", "svcd serving", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "db", s.store.Dialect())
}

// Run starts the server and blocks until ctx is done (SIGTERM in main) or a
// listener fails, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	s.Start()
	var err error
	select {
	case <-ctx.Done():
		_ = level.Info(s.logger).Log("msg", "shutting down", "cause", context.Cause(ctx))
	case err = <-s.serveErr:
		_ = level.Error(s.logger).Log("msg", "listener failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(err, s.Shutdown(sctx))
}

// Ready reports whether svcd can serve: not shutting down and the database
// answers a ping. /readyz calls it on every probe.
func (s *Server) Ready(ctx context.Context) error {
	select {
	case <-s.shuttingDown:
		return errors.New("shutting down")
	default:
	}
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return nil
}

func (s *Server) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(ServiceName, st)
}

func (s *Server) refreshReady() {
	ctx, cancel := context.WithTimeout(context.Background(), max(time.Second, s.cfg.ReadyInterval))
	defer cancel()
	err := s.Ready(ctx)
	s.setServing(err == nil)
}

// readyLoop keeps the gRPC health status in step with the database, so
// gRPC health checks (and load balancers using them) see an outage.
func (s *Server) readyLoop() {
	defer close(s.readyDone)
	t := time.NewTicker(s.cfg.ReadyInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopReady:
			return
		case <-t.C:
			s.refreshReady()
		}
	}
}

// Shutdown stops svcd in the reverse order of start: first it reports not
// ready (so balancers stop sending), then stops accepting and drains
// requests in flight on both listeners until ctx ends (then cuts them off),
// then stops the readiness loop, and closes the database last, because
// draining requests still write to it. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		close(s.shuttingDown)
		s.health.Shutdown() // every service NOT_SERVING

		var wg sync.WaitGroup
		var httpErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			httpErr = s.httpSrv.Shutdown(ctx)
		}()
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { s.grpcSrv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				s.grpcSrv.Stop()
				<-done
			}
		}()
		wg.Wait()

		close(s.stopReady)
		if s.started.Load() {
			<-s.readyDone
		}
		s.shutdownErr = errors.Join(httpErr, s.closeBackends())
		_ = level.Info(s.logger).Log("msg", "shutdown complete", "err", s.shutdownErr)
	})
	return s.shutdownErr
}

// closeBackends closes what requests use: the broker connections and the
// database.
func (s *Server) closeBackends() error {
	var err error
	if s.checker != nil {
		err = s.checker.Close()
	}
	return errors.Join(err, s.store.Close())
}

// newChecker is the result verifier cfg asks for (nil when disabled).
func newChecker(cfg BrokerCheck, sec *security) (*brokercheck.Checker, error) {
	if cfg.Disabled {
		return nil, nil
	}
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("broker verification: no brokers configured (set the brokers to verify results with, or disable verification explicitly for a svcd whose writers are all trusted)")
	}
	bc := brokercheck.Config{Brokers: cfg.Addrs, DialOptions: cfg.DialOptions, Auth: sec.auth, Timeout: cfg.Timeout}
	if sec.tls != nil {
		bc.TLS = sec.tls.ClientTLSConfig()
	}
	return brokercheck.New(bc)
}

// gormWriter sends GORM's slow-query and error lines to the Go kit logger.
type gormWriter struct{ l log.Logger }

// Printf implements GORM's logger.Writer.
func (w gormWriter) Printf(format string, args ...any) {
	_ = w.l.Log("component", "gorm", "msg", fmt.Sprintf(format, args...))
}
