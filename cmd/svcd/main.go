// Command svcd is raftq's results service: workers store each job's outcome
// through it and producers read results from it. With no flags it serves
// gRPC on 127.0.0.1:7400 and HTTP on 127.0.0.1:7401 over a SQLite database
// in data/svcd (nothing to install). SIGTERM or SIGINT shuts it down
// gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/raftq/raftq/svcd/server"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "svcd:", err)
		}
		os.Exit(2)
	}
}

// run parses the flags into one server.Config and runs svcd until a signal.
func run(ctx context.Context, args []string) error {
	cfg := server.Defaults()
	var logLevel string
	fs := flag.NewFlagSet("svcd", flag.ContinueOnError)
	fs.StringVar(&cfg.ListenGRPC, "listen-grpc", cfg.ListenGRPC, "gRPC listen address")
	fs.StringVar(&cfg.ListenHTTP, "listen-http", cfg.ListenHTTP, "HTTP listen address (JSON API, /healthz, /readyz, /metrics)")
	fs.StringVar(&cfg.DB, "db", cfg.DB, "database: sqlite or postgres")
	fs.StringVar(&cfg.DSN, "dsn", cfg.DSN, "PostgreSQL DSN (with --db postgres), e.g. \"host=127.0.0.1 user=postgres dbname=raftq sslmode=disable\"")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory of the SQLite database svcd.db (with --db sqlite)")
	fs.IntVar(&cfg.DBMaxOpenConns, "db-max-open", cfg.DBMaxOpenConns, "max open database connections (0: default; PostgreSQL 16, SQLite 4 readers + 1 writer)")
	fs.IntVar(&cfg.DBMaxIdleConns, "db-max-idle", cfg.DBMaxIdleConns, "max idle database connections (0: same as max open)")
	fs.DurationVar(&cfg.DBConnMaxLifetime, "db-conn-max-lifetime", cfg.DBConnMaxLifetime, "recycle database connections after this long (0: 30m)")
	fs.IntVar(&cfg.MaxOutputBytes, "max-output-bytes", cfg.MaxOutputBytes, "largest result output accepted")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", cfg.RateLimit, "requests per second over all endpoints (0: unlimited)")
	fs.IntVar(&cfg.RateBurst, "rate-burst", cfg.RateBurst, "rate limiter burst (0: the rate)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long to drain requests on SIGTERM")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (debug logs every request)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	lvl, err := parseLevel(logLevel)
	if err != nil {
		return err
	}
	logger := log.NewLogfmtLogger(log.NewSyncWriter(os.Stderr))
	logger = log.With(level.NewFilter(logger, lvl), "ts", log.DefaultTimestampUTC, "svc", "svcd")
	cfg.Logger = logger

	// Signals cancel ctx; Run then shuts down in order (see server.Shutdown).
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	srv, err := server.New(ctx, cfg)
	if err != nil {
		_ = level.Error(logger).Log("msg", "start failed", "err", err)
		return err
	}
	return srv.Run(ctx)
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
