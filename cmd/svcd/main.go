// Command svcd is raftq's results service: workers store each job's outcome
// through it and producers read results from it. With no flags it serves
// gRPC on 127.0.0.1:7400 and HTTP on 127.0.0.1:7401 over a SQLite database
// in data/svcd (nothing to install). SIGTERM or SIGINT shuts it down
// gracefully.
//
// Settings come from defaults < a YAML file (--config) < RAFTQ_*
// environment variables < flags; `svcd config` prints the effective
// configuration with the DSN's password and other secrets redacted. An
// invalid setting is reported with its key and reason, exit status 2.
//
// Every result is verified with the brokers before it is stored (the
// job's queue and lease token come from the broker leader, not from the
// writer: svcd/brokercheck): --brokers host:port,... or, without it, the
// brokers registered in etcd. svcd does not start without brokers unless
// --verify-brokers=false (a svcd whose writers are all trusted).
//
// With --etcd, svcd registers its gRPC address under
// "<prefix>/svcd/<id>" with a lease it keeps alive, so workers find it
// through etcd (discovery/etcdresolver, round-robin over instances); the
// registration is revoked first at shutdown.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/discovery/etcdresolver"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/tracing"
	"github.com/raftq/raftq/internal/version"
	"github.com/raftq/raftq/svcd/brokercheck"
	"github.com/raftq/raftq/svcd/server"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "svcd")
		return
	}
	// Every file svcd creates (the SQLite database, WAL and shared
	// memory, anything later) is its user's only, whatever umask it was
	// started with.
	syscall.Umask(0o077)
	if len(os.Args) > 1 && os.Args[1] == "config" {
		os.Exit(printConfig(os.Args[2:], os.Stdout, os.Stderr))
	}
	err := run(context.Background(), os.Args[1:])
	var ce configError
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return
	case errors.As(err, &ce):
		fmt.Fprintln(os.Stderr, "svcd: invalid configuration:")
		for _, e := range unjoin(ce.error) {
			fmt.Fprintf(os.Stderr, "  %v\n", e)
		}
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "svcd:", err)
		os.Exit(1)
	}
}

// configError marks invalid configuration (exit status 2, nothing started).
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func keys() []config.Key {
	def := server.Defaults()
	nonNeg := func(v any) error {
		switch x := v.(type) {
		case int:
			if x < 0 {
				return errors.New("must not be negative")
			}
		case float64:
			if x < 0 {
				return errors.New("must not be negative")
			}
		case time.Duration:
			if x < 0 {
				return errors.New("must not be negative")
			}
		}
		return nil
	}
	// TLS and auth keys are declared in security.go.
	return append([]config.Key{
		{Name: "listen.grpc", Flag: "listen-grpc", Kind: config.String, Default: def.ListenGRPC, Usage: "gRPC listen address"},
		{Name: "listen.http", Flag: "listen-http", Kind: config.String, Default: def.ListenHTTP, Usage: "HTTP listen address (JSON API, /healthz, /readyz, /metrics)"},
		{Name: "db.driver", Flag: "db", Kind: config.String, Default: def.DB, Usage: "database: sqlite or postgres",
			Check: func(v any) error {
				if s := v.(string); s != "sqlite" && s != "postgres" {
					return fmt.Errorf("%q: want sqlite or postgres", s)
				}
				return nil
			}},
		{Name: "db.dsn", Flag: "dsn", Kind: config.String, Redact: config.RedactDSN,
			Usage: "PostgreSQL DSN (with --db postgres), e.g. \"host=127.0.0.1 user=postgres dbname=raftq sslmode=disable\""},
		{Name: "db.data_dir", Flag: "data-dir", Kind: config.String, Default: def.DataDir, Usage: "directory of the SQLite database svcd.db (with --db sqlite)"},
		{Name: "db.max_open", Flag: "db-max-open", Kind: config.Int, Default: def.DBMaxOpenConns, Check: nonNeg,
			Usage: "max open database connections (0: default; PostgreSQL 16, SQLite 4 readers + 1 writer)"},
		{Name: "db.max_idle", Flag: "db-max-idle", Kind: config.Int, Default: def.DBMaxIdleConns, Check: nonNeg, Usage: "max idle database connections (0: same as max open)"},
		{Name: "db.conn_max_lifetime", Flag: "db-conn-max-lifetime", Kind: config.Duration, Default: def.DBConnMaxLifetime, Check: nonNeg,
			Usage: "recycle database connections after this long (0: 30m)"},
		{Name: "limits.max_output_bytes", Flag: "max-output-bytes", Kind: config.Int, Default: def.MaxOutputBytes, Check: nonNeg, Usage: "largest result output accepted"},
		{Name: "rate.limit", Flag: "rate-limit", Kind: config.Float, Default: def.RateLimit, Check: nonNeg, Usage: "requests per second over all endpoints (0: unlimited)"},
		{Name: "rate.burst", Flag: "rate-burst", Kind: config.Int, Default: def.RateBurst, Check: nonNeg, Usage: "rate limiter burst (0: the rate)"},
		{Name: "shutdown_timeout", Flag: "shutdown-timeout", Kind: config.Duration, Default: def.ShutdownTimeout, Check: nonNeg, Usage: "how long to drain requests on SIGTERM"},
		{Name: "log.level", Flag: "log-level", Kind: config.String, Default: "info", Usage: "debug, info, warn or error (debug logs every request)",
			Check: func(v any) error { _, err := parseLevel(v.(string)); return err }},
		{Name: "instance.id", Flag: "id", Kind: config.String, Usage: "instance id in etcd (default: svcd-<advertised address>)",
			Check: func(v any) error {
				if strings.ContainsAny(v.(string), "/ ") {
					return errors.New("must not contain '/' or spaces")
				}
				return nil
			}},
		{Name: "grpc.advertise", Flag: "grpc-advertise", Kind: config.String, Usage: "gRPC address registered in etcd (default: the bound address, with the host name for a wildcard host)"},
		{Name: "brokers", Flag: "brokers", Kind: config.List,
			Usage: "broker gRPC addresses host:port,... every result is verified with (when empty: found through etcd with etcd.endpoints)"},
		{Name: "verify.brokers", Flag: "verify-brokers", Kind: config.Bool, Default: true,
			Usage: "verify every result's queue and lease token with the brokers (false: trust the writers' claims; only for a svcd whose writers are all trusted)"},
		{Name: "verify.timeout", Flag: "verify-timeout", Kind: config.Duration, Default: brokercheck.DefaultTimeout, Check: nonNeg,
			Usage: "how long one verification may wait for a broker leader before the write is refused UNAVAILABLE (0: default)"},
		{Name: "etcd.endpoints", Flag: "etcd", Kind: config.List, Usage: "etcd endpoints: register this instance for discovery (and find the brokers when brokers is empty)"},
		{Name: "etcd.prefix", Flag: "etcd-prefix", Kind: config.String, Default: discovery.DefaultPrefix, Usage: "cluster prefix of the etcd keys",
			Check: func(v any) error { return discovery.ValidatePrefix(v.(string)) }},
		{Name: "etcd.username", Flag: "etcd-username", Kind: config.String, Usage: "etcd user"},
		{Name: "etcd.password", Flag: "etcd-password", Kind: config.String, Secret: true, Usage: "etcd password"},
		{Name: "etcd.dial_timeout", Flag: "etcd-dial-timeout", Kind: config.Duration, Default: 5 * time.Second, Usage: "etcd connection timeout"},
		{Name: "etcd.lease_ttl", Flag: "etcd-lease-ttl", Kind: config.Duration, Default: 10 * time.Second, Usage: "TTL of the etcd registration",
			Check: func(v any) error {
				if v.(time.Duration) < 2*time.Second {
					return errors.New("must be at least 2s")
				}
				return nil
			}},
	}, append(securityKeys(), tracing.Keys()...)...)
}

// settings is everything run needs: the server's Config and the
// registration.
type settings struct {
	srv      server.Config
	level    level.Option
	id       string
	adv      string
	etcd     []string
	prefix   string
	user     string
	password string
	dial     time.Duration
	ttl      time.Duration
	etcdTLS  *tls.Config // nil: plaintext to etcd
}

func load(args []string, errOut io.Writer) (*config.Values, settings, error) {
	l := config.New("svcd", keys())
	l.FlagSet().SetOutput(errOut)
	v, err := l.Load(args)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, settings{}, err
		}
		return nil, settings{}, configError{err}
	}
	if rest := l.FlagSet().Args(); len(rest) > 0 {
		return nil, settings{}, configError{&config.Error{Key: "arguments", Reason: fmt.Sprintf("unexpected %q", rest)}}
	}
	cfg := server.Defaults()
	cfg.ListenGRPC = v.String("listen.grpc")
	cfg.ListenHTTP = v.String("listen.http")
	cfg.DB = v.String("db.driver")
	cfg.DSN = v.String("db.dsn")
	cfg.DataDir = v.String("db.data_dir")
	cfg.DBMaxOpenConns = v.Int("db.max_open")
	cfg.DBMaxIdleConns = v.Int("db.max_idle")
	cfg.DBConnMaxLifetime = v.Duration("db.conn_max_lifetime")
	cfg.MaxOutputBytes = v.Int("limits.max_output_bytes")
	cfg.RateLimit = v.Float("rate.limit")
	cfg.RateBurst = v.Int("rate.burst")
	cfg.ShutdownTimeout = v.Duration("shutdown_timeout")
	cfg.Brokers = server.BrokerCheck{Disabled: !v.Bool("verify.brokers"), Addrs: v.List("brokers"), Timeout: v.Duration("verify.timeout")}
	lvl, _ := parseLevel(v.String("log.level"))
	s := settings{
		srv: cfg, level: lvl, id: v.String("instance.id"), adv: v.String("grpc.advertise"),
		etcd: v.List("etcd.endpoints"), prefix: v.String("etcd.prefix"), user: v.String("etcd.username"),
		password: v.String("etcd.password"), dial: v.Duration("etcd.dial_timeout"), ttl: v.Duration("etcd.lease_ttl"),
	}
	var errs []error
	if cfg.DB == "postgres" && cfg.DSN == "" {
		errs = append(errs, l.Errorf("db.dsn", "required with db.driver postgres"))
	}
	if cfg.DB == "sqlite" && cfg.DataDir == "" {
		errs = append(errs, l.Errorf("db.data_dir", "required with db.driver sqlite"))
	}
	if !cfg.Brokers.Disabled && len(cfg.Brokers.Addrs) == 0 && len(s.etcd) == 0 {
		errs = append(errs, l.Errorf("brokers", "svcd verifies every result with the brokers: set brokers (or etcd.endpoints to find them), or verify.brokers=false for a svcd whose writers are all trusted"))
	}
	errs = append(errs, applySecurity(l, v, &s)...)
	if len(errs) > 0 {
		return nil, settings{}, configError{errors.Join(errs...)}
	}
	return v, s, nil
}

// printConfig is `svcd config`.
func printConfig(args []string, stdout, stderr io.Writer) int {
	v, _, err := load(args, stderr)
	var ce configError
	switch {
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, &ce):
		fmt.Fprintln(stderr, "svcd: invalid configuration:")
		for _, e := range unjoin(ce.error) {
			fmt.Fprintf(stderr, "  %v\n", e)
		}
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "svcd:", err)
		return 1
	}
	if err := v.Print(stdout); err != nil {
		fmt.Fprintln(stderr, "svcd:", err)
		return 1
	}
	return 0
}

// run loads the configuration and runs svcd until a signal. Order: the
// etcd client (when configured), the server (database, broker
// verification, listeners), then the etcd registration; at shutdown the
// registration is revoked first, so clients stop picking this instance
// before it stops answering.
func run(ctx context.Context, args []string) error {
	v, s, err := load(args, os.Stderr)
	if err != nil {
		return err
	}
	if s.srv.Auth.Enabled() {
		// Audit lines (refused calls, admin reads of /metrics) go to their
		// own sink, whatever the log level.
		a, err := auth.OpenAuditFromConfig(v, os.Stderr)
		if err != nil {
			return fmt.Errorf("audit.file: %w", err)
		}
		defer a.Close()
		s.srv.Auth.Audit = a
	}
	logger := log.NewLogfmtLogger(log.NewSyncWriter(os.Stderr))
	logger = log.With(level.NewFilter(logger, s.level), "ts", log.DefaultTimestampUTC, "svc", "svcd")
	s.srv.Logger = logger

	sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Tracing (off unless tracing.otlp_endpoint is set) before the server,
	// whose interceptor takes otel's global provider; stopped last, so the
	// last calls' spans are flushed.
	tc := tracing.FromValues(v, "svcd")
	stopTracing, err := tracing.Start(ctx, tc)
	if err != nil {
		return err
	}
	defer func() {
		if err := stopTracing(); err != nil {
			_ = level.Warn(logger).Log("msg", "tracing: flushing spans at shutdown", "err", err)
		}
	}()
	if tc.OTLPEndpoint != "" {
		_ = level.Info(logger).Log("msg", "tracing on", "otlp_endpoint", tc.OTLPEndpoint)
	}

	// etcd first (it connects lazily): the brokers results are verified
	// with may be found through it.
	var cli *clientv3.Client
	if len(s.etcd) > 0 {
		if cli, err = clientv3.New(clientv3.Config{Endpoints: s.etcd, DialTimeout: s.dial, Username: s.user, Password: s.password, TLS: s.etcdTLS, Logger: zap.NewNop()}); err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		defer cli.Close()
		if !s.srv.Brokers.Disabled && len(s.srv.Brokers.Addrs) == 0 {
			s.srv.Brokers.Addrs = []string{etcdresolver.BrokersTarget(s.prefix)}
			s.srv.Brokers.DialOptions = etcdresolver.BrokerDialOptions(cli)
		}
	}
	if s.srv.Brokers.Disabled {
		_ = level.Warn(logger).Log("msg", "results are not verified with the brokers (verify.brokers=false): any worker token may store any job's result")
	}
	srv, err := server.New(sigCtx, s.srv)
	if err != nil {
		_ = level.Error(logger).Log("msg", "start failed", "err", err)
		return err
	}
	srvCtx, cancelSrv := context.WithCancel(context.Background())
	defer cancelSrv()
	var reg *discovery.Registration
	if cli != nil {
		addr := advertised(s.adv, srv.GRPCAddr())
		id := s.id
		if id == "" {
			id = "svcd-" + strings.NewReplacer(":", "-", "[", "", "]", "").Replace(addr)
		}
		reg, err = discovery.Register(cli, s.prefix, discovery.ServiceSvcd, discovery.Instance{
			ID: id, Addr: addr, Meta: map[string]string{discovery.MetaHTTPAddr: advertised("", srv.HTTPAddr())},
		}, discovery.RegisterOptions{TTL: s.ttl})
		if err != nil {
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(sctx)
			c()
			return fmt.Errorf("etcd registration: %w", err)
		}
		_ = level.Info(logger).Log("msg", "registered in etcd", "key", reg.Key())
	}
	go func() {
		<-sigCtx.Done()
		if reg != nil {
			rctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			if err := reg.Close(rctx); err != nil {
				_ = level.Warn(logger).Log("msg", "etcd registration not revoked; it expires with its lease", "err", err)
			}
			c()
		}
		cancelSrv()
	}()
	return srv.Run(srvCtx)
}

// advertised is the address others dial: adv if set, else bound, with a
// wildcard host replaced by this machine's host name.
func advertised(adv, bound string) string {
	if adv != "" {
		return adv
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			return net.JoinHostPort(h, port)
		}
	}
	return bound
}

func parseLevel(s string) (level.Option, error) {
	switch s {
	case "debug":
		return level.AllowDebug(), nil
	case "info":
		return level.AllowInfo(), nil
	case "warn":
		return level.AllowWarn(), nil
	case "error":
		return level.AllowError(), nil
	}
	return nil, fmt.Errorf("unknown log level %q", s)
}
