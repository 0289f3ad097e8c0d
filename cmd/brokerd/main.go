// Command brokerd runs one raftq broker node.
//
//	brokerd --id n1 --data-dir /var/lib/raftq/n1 \
//	  --raft-addr 10.0.0.1:7201 --grpc-addr 10.0.0.1:7101 \
//	  --bootstrap-expect 3 --peers n1=10.0.0.1:7201,n2=10.0.0.2:7201,n3=10.0.0.3:7201
//
// A fresh node either bootstraps (with --bootstrap-expect and --peers) or
// joins an existing cluster (--join with any member's gRPC address). A node
// restarted on a data dir that holds Raft state ignores both and rejoins
// from disk. SIGTERM or SIGINT shuts it down cleanly.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftq/raftq/brokerd"
)

func main() {
	os.Exit(run())
}

func run() int {
	cfg := brokerd.DefaultConfig()
	fs := flag.NewFlagSet("brokerd", flag.ContinueOnError)
	fs.StringVar(&cfg.NodeID, "id", "", "this node's Raft server id (required, stable)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the Raft log, stable store and snapshots (required)")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7201", "Raft TCP bind address")
	fs.StringVar(&cfg.RaftAdvertise, "raft-advertise", "", "Raft address peers dial (default: the bound address)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:7101", "gRPC API listen address")
	fs.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "gRPC address told to clients and peers (default: the bound address)")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "bootstrap a new cluster of this many peers (with --peers) when the data dir is empty")
	peers := fs.String("peers", "", "bootstrap peers: id=raft-host:port,...")
	join := fs.String("join", "", "gRPC addresses of existing members to join through: host:port,...")
	fs.BoolVar(&cfg.Forward, "forward", true, "forward calls that need the leader instead of answering NOT_LEADER")
	fs.DurationVar(&cfg.Retention, "retention", cfg.Retention, "how long terminal jobs are kept")
	fs.DurationVar(&cfg.Defaults.LeaseDuration, "default-lease", cfg.Defaults.LeaseDuration, "lease duration of jobs that set none")
	maxAttempts := fs.Int("default-max-attempts", int(cfg.Defaults.MaxAttempts), "max attempts of jobs that set none")
	fs.IntVar(&cfg.Limits.MaxPayloadBytes, "max-payload", cfg.Limits.MaxPayloadBytes, "largest job payload in bytes")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	debugAddr := fs.String("debug-addr", "", "serve /debug/pprof on this address (off when empty)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.Defaults.MaxAttempts = int32(*maxAttempts)
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "brokerd: --log-level: %v\n", err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	var err error
	if cfg.Peers, err = brokerd.ParsePeers(*peers); err != nil {
		fmt.Fprintf(os.Stderr, "brokerd: --peers: %v\n", err)
		return 2
	}
	for _, a := range strings.Split(*join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Join = append(cfg.Join, a)
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "brokerd: invalid configuration:\n%v\n", err)
		return 2
	}

	node, err := brokerd.Open(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "brokerd: %v\n", err)
		return 1
	}
	if *debugAddr != "" {
		// net/http/pprof registers on the default mux.
		go func() { cfg.Logger.Error("debug server", "err", http.ListenAndServe(*debugAddr, nil)) }()
	}
	cfg.Logger.Info("brokerd serving", "id", cfg.NodeID, "grpc", node.GRPCAddr(), "raft", node.RaftAddr(), "data", cfg.DataDir)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	cfg.Logger.Info("shutting down", "signal", s.String())
	done := make(chan error, 1)
	go func() { done <- node.Close() }()
	select {
	case err := <-done:
		if err != nil {
			cfg.Logger.Error("shutdown", "err", err)
			return 1
		}
	case <-time.After(30 * time.Second):
		cfg.Logger.Error("shutdown took longer than 30s; exiting")
		return 1
	}
	return 0
}
