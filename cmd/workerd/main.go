// Command workerd is the raftq worker daemon: it leases jobs from a broker
// cluster and runs them with its built-in handlers (echo, sleep, sha256,
// flaky, fail). SIGTERM or SIGINT shuts it down gracefully: it stops
// fetching, lets in-flight jobs finish up to --shutdown-timeout, and nacks
// the rest so other workers take them at once.
//
// It logs JSON lines to stderr; each attempt's start is a line with
// msg "job started", job_id and lease_token.
//
//	workerd --brokers 127.0.0.1:7001,127.0.0.1:7002 --queues default:8,slow:2 --metrics-addr :9102
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/worker"
	"github.com/raftq/raftq/workerd"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "workerd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("workerd", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:7001", "comma-separated broker gRPC addresses")
	queues := fs.String("queues", "default:4", "queues to work as name:concurrency, comma-separated")
	workerID := fs.String("worker-id", "", "worker id shown as the jobs' leased_by (default host-pid-random)")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "how long in-flight jobs may finish after SIGTERM")
	pollWait := fs.Duration("poll-wait", 30*time.Second, "long-poll wait of one fetch")
	lease := fs.Duration("lease-duration", 0, "override the jobs' lease duration (0 keeps theirs)")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics on this address (empty: off)")
	svcd := fs.String("svcd", "", "results service (svcd) gRPC address: each attempt's outcome is stored there before the ack (empty: not recorded)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	qs, err := workerd.ParseQueues(*queues)
	if err != nil {
		return fmt.Errorf("--queues: %w", err)
	}
	var addrs []string
	for _, a := range strings.Split(*brokers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	var rec worker.Recorder
	if *svcd != "" {
		rc, err := results.Dial(*svcd)
		if err != nil {
			return fmt.Errorf("--svcd: %w", err)
		}
		defer rc.Close()
		rec = workerd.ResultsRecorder{Client: rc}
	}
	d, err := workerd.New(workerd.Config{
		Recorder:        rec,
		Brokers:         addrs,
		Queues:          qs,
		WorkerID:        *workerID,
		ShutdownTimeout: *shutdown,
		PollWait:        *pollWait,
		LeaseDuration:   *lease,
		MetricsAddr:     *metricsAddr,
		Logger:          log,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return d.Run(ctx)
}
