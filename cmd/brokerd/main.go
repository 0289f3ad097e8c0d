// Command brokerd runs one raftq broker node.
//
//	brokerd --id n1 --data-dir /var/lib/raftq/n1 \
//	  --raft-addr 10.0.0.1:7201 --grpc-addr 10.0.0.1:7101 \
//	  --bootstrap-expect 3 --peers n1=10.0.0.1:7201,n2=10.0.0.2:7201,n3=10.0.0.3:7201
//
// or, finding its peers through etcd (every node gets the same flags):
//
//	brokerd --id n1 --data-dir /var/lib/raftq/n1 --raft-addr … --grpc-addr … \
//	  --etcd http://10.0.0.9:2379 --bootstrap-expect 3
//
// A fresh node bootstraps (with --bootstrap-expect and --peers, or
// --bootstrap-expect and --etcd), or joins an existing cluster (--join with
// any member's gRPC address, or through etcd). A node restarted on a data
// dir that holds Raft state ignores all that and rejoins from disk.
//
// Settings come from defaults < a YAML file (--config) < RAFTQ_*
// environment variables < flags; every flag has a key (`brokerd config`
// prints them all with where each value came from, secrets redacted). An
// invalid setting is reported with its key and reason, exit status 2,
// before anything starts.
//
//	brokerd config [flags]       print the effective configuration
//	brokerd leave --id n3 [--brokers a,b | --etcd …]
//	                             remove node n3 from the cluster's voters
//	brokerd recover --id n1 --data-dir … [--members n1=host:port,…]
//	                             with the node stopped, after its cluster lost
//	                             its quorum for good: make members (default:
//	                             n1 alone) its voters, so it starts and leads
//
// SIGTERM or SIGINT shuts the node down cleanly (with --leave-on-terminate
// it first leaves the cluster).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/tracing"
	"github.com/raftq/raftq/internal/version"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "brokerd")
		return
	}
	// Every file brokerd creates (Raft log, snapshots, FSM, restore
	// spools) is its user's only, whatever umask it was started with.
	syscall.Umask(0o077)
	tuneGC()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// defaultGCPercent is brokerd's GC target when GOGC is not set. The broker
// allocates per request (gRPC, protobuf, FSM copies) and keeps a modest
// live heap, so collecting at 5× the live heap instead of 2× trades memory
// for CPU on the hot path: measured on 2 cores with 64 producers, 12,200 →
// 14,300 durable enqueues/s. GOGC (and GOMEMLIMIT, for a hard ceiling)
// override it as usual.
const defaultGCPercent = 400

// defaultMemoryLimit is brokerd's soft heap limit when GOMEMLIMIT is not
// set. With the jobs on disk (fsm.db) the live heap is small, and 5× of it
// is what GOGC 400 would let the heap grow to; the limit makes the collector
// run earlier instead, so RSS stays bounded whatever the backlog. Measured
// with make bench-backlog (1M queued jobs): see fsm/DESIGN.md.
const defaultMemoryLimit = 512 << 20

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// run is main without the exit: 0 after a clean shutdown, 1 on a failure
// at run time, 2 on invalid configuration (nothing started).
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "config":
			return runConfig(args[1:], stdout, stderr)
		case "leave":
			return runLeave(args[1:], stdout, stderr)
		case "recover":
			return runRecover(args[1:], stdout, stderr)
		}
	}
	l := newLoader()
	l.FlagSet().SetOutput(stderr)
	cfg, extra, err := load(l, args)
	if err != nil {
		return usageError(stderr, err)
	}
	return serve(cfg, extra, stderr)
}

// usageError reports invalid configuration: one line per problem, each
// naming the key, and status 2. --help is not an error.
func usageError(w io.Writer, err error) int {
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(w, "brokerd: invalid configuration:")
	for _, e := range unjoin(err) {
		fmt.Fprintf(w, "  %v\n", e)
	}
	return 2
}

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

func runConfig(args []string, stdout, stderr io.Writer) int {
	l := newLoader()
	l.FlagSet().SetOutput(stderr)
	l.FlagSet().Usage = func() {
		fmt.Fprintln(stderr, "usage: brokerd config [flags]: print the effective configuration (secrets redacted)")
		l.FlagSet().PrintDefaults()
	}
	v, err := l.Load(args)
	if err == nil {
		_, _, err = toConfig(l, v)
	}
	if err != nil {
		return usageError(stderr, err)
	}
	if err := v.Print(stdout); err != nil {
		fmt.Fprintln(stderr, "brokerd:", err)
		return 1
	}
	return 0
}

// extra is what the process needs beyond daemon.Config.
type extra struct {
	debugAddr        string
	leaveOnTerminate bool
	shutdownTimeout  time.Duration
	// tracing is the OpenTelemetry setup (tracing.* keys; off by default).
	tracing tracing.Config
	// openAudit opens the audit sink (audit.* keys); w is standard error.
	openAudit func(w io.Writer) (*auth.AuditLog, error)
}

func load(l *config.Loader, args []string) (daemon.Config, extra, error) {
	v, err := l.Load(args)
	if err != nil {
		return daemon.Config{}, extra{}, err
	}
	if rest := l.FlagSet().Args(); len(rest) > 0 {
		return daemon.Config{}, extra{}, &config.Error{Key: "arguments", Reason: fmt.Sprintf("unexpected %q (subcommands: config, leave, recover)", rest)}
	}
	return toConfig(l, v)
}

// serve runs a node until SIGTERM or SIGINT.
func serve(cfg daemon.Config, x extra, stderr io.Writer) int {
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	testHooks(&cfg.Config) // the jepsen build's (testhooks_jepsen.go); nothing otherwise
	if cfg.Auth.Enabled() && x.openAudit != nil {
		a, err := x.openAudit(stderr)
		if err != nil {
			fmt.Fprintf(stderr, "brokerd: audit.file: %v\n", err)
			return 1
		}
		defer a.Close()
		cfg.Auth.Audit = a
	}
	// Tracing before the node, whose handlers take otel's global provider;
	// stopped last, so the last spans are flushed.
	stopTracing, err := tracing.Start(context.Background(), x.tracing)
	if err != nil {
		fmt.Fprintf(stderr, "brokerd: %v\n", err)
		return 1
	}
	defer func() {
		if err := stopTracing(); err != nil {
			cfg.Logger.Warn("tracing: flushing spans at shutdown", "err", err)
		}
	}()
	if x.tracing.OTLPEndpoint != "" {
		cfg.Logger.Info("tracing on", "otlp_endpoint", x.tracing.OTLPEndpoint)
	}
	// Start order (brokerd/daemon): etcd's client and live config, the
	// node (stores, Raft, gRPC), etcd registration and bootstrap, the
	// admin API; then the debug server. Shutdown is the reverse: the debug
	// server dies with the process; the node leaves (if asked), and the
	// daemon closes.
	d, err := daemon.Open(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "brokerd: %v\n", err)
		return 1
	}
	if x.debugAddr != "" {
		// net/http/pprof registers on the default mux.
		go func() { cfg.Logger.Error("debug server", "err", http.ListenAndServe(x.debugAddr, nil)) }()
	}
	cfg.Logger.Info("brokerd serving", "id", cfg.NodeID, "grpc", d.Node.GRPCAddr(), "raft", d.Node.RaftAddr(), "data", cfg.DataDir,
		"etcd", len(cfg.Etcd.Endpoints) > 0)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	cfg.Logger.Info("shutting down", "signal", s.String())
	done := make(chan error, 1)
	go func() {
		if x.leaveOnTerminate {
			// Leave first, while this node can still reach the leader: the
			// cluster then does not count a stopped node against quorum.
			ctx, cancel := context.WithTimeout(context.Background(), x.shutdownTimeout/2)
			if err := d.Node.Leave(ctx); err != nil {
				cfg.Logger.Error("leave on terminate failed; shutting down anyway", "err", err)
			}
			cancel()
		}
		done <- d.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			cfg.Logger.Error("shutdown", "err", err)
			return 1
		}
	case <-time.After(x.shutdownTimeout):
		cfg.Logger.Error("shutdown took too long; exiting", "timeout", x.shutdownTimeout)
		return 1
	}
	return 0
}
