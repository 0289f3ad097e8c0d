// Package workerd is the raftq worker daemon's library: the built-in job
// types (echo, sleep, sha256, flaky, fail), the parsing of its settings, and
// the wiring of a worker.Worker with logging, Prometheus metrics and a
// results Recorder. cmd/workerd is a thin main around Daemon; tests and
// benchmarks run Daemon in-process.
package workerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/worker"
)

// Config is the daemon's configuration; cmd/workerd fills it from flags.
type Config struct {
	// Brokers are gRPC addresses of some broker nodes (the client finds the
	// leader and learns others from its hints).
	Brokers []string
	// Queues to work, each with its concurrency.
	Queues []worker.QueueConfig
	// WorkerID names the daemon to the broker (default: host-pid-random).
	WorkerID string
	// ShutdownTimeout: how long in-flight jobs may finish after a stop
	// signal (default 30s).
	ShutdownTimeout time.Duration
	// PollWait is the long-poll wait of one fetch (default 30s).
	PollWait time.Duration
	// UseFetch long-polls with Fetch instead of the default Consume
	// streams (worker.Options.UseFetch).
	UseFetch bool
	// LeaseDuration overrides the jobs' lease duration when set.
	LeaseDuration time.Duration
	// MetricsAddr, when set, serves /metrics there (":9102", or
	// "127.0.0.1:0" for any free port; the bound address is logged).
	MetricsAddr string
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Recorder stores each attempt's outcome before the ack. Default
	// worker.NopRecorder: the daemon runs without a results service.
	Recorder worker.Recorder
	// Registry gets the metrics (default: a fresh registry with the Go and
	// process collectors).
	Registry *prometheus.Registry
	// ClientOptions tune the broker client.
	ClientOptions client.Options
	// OnSettle is passed to the worker (tests and audit hooks).
	OnSettle func(*worker.Job, worker.Settlement)
}

// ParseQueues reads "q1:8,q2:2" (name:concurrency; a bare name means
// concurrency 1), the --queues flag. An entry of weighted queues joined by
// "|", as in "critical=6|default=3|low=1:10", is one pool of that many
// slots fetching the queues with weighted selection (worker.QueueConfig
// Weights; each weight 1..1000), labelled in logs and metrics by the
// entry as written.
func ParseQueues(s string) ([]worker.QueueConfig, error) {
	var out []worker.QueueConfig
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, conc, hasConc := strings.Cut(part, ":")
		q := worker.QueueConfig{Name: strings.TrimSpace(name), Concurrency: 1}
		if q.Name == "" {
			return nil, fmt.Errorf("queue %q: empty name", part)
		}
		if strings.ContainsAny(q.Name, "|=") {
			ws, err := parseWeights(q.Name)
			if err != nil {
				return nil, fmt.Errorf("queue %q: %w", part, err)
			}
			q.Weights = ws
		}
		if hasConc {
			n, err := strconv.Atoi(strings.TrimSpace(conc))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("queue %q: concurrency must be a positive integer", part)
			}
			q.Concurrency = n
		}
		if seen[q.Name] {
			return nil, fmt.Errorf("queue %q listed twice", q.Name)
		}
		seen[q.Name] = true
		out = append(out, q)
	}
	if len(out) == 0 {
		return nil, errors.New("no queues given")
	}
	return out, nil
}

// parseWeights reads "a=3|b=1" into a weighted pool's weights.
func parseWeights(s string) (map[string]int, error) {
	ws := map[string]int{}
	for _, item := range strings.Split(s, "|") {
		name, w, ok := strings.Cut(strings.TrimSpace(item), "=")
		name = strings.TrimSpace(name)
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if !ok || name == "" || err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("weighted queue %q: want name=weight with a weight from 1 to 1000", item)
		}
		if _, dup := ws[name]; dup {
			return nil, fmt.Errorf("weighted queue %q listed twice", name)
		}
		ws[name] = n
	}
	return ws, nil
}

// LogStarts is a middleware that logs each attempt's start with its job id
// and lease token (one line per attempt, so an operator can tell which
// worker held which lease) and its end with the error, if any.
func LogStarts(log *slog.Logger) worker.Middleware {
	return func(next worker.Handler) worker.Handler {
		return func(ctx context.Context, job *worker.Job) error {
			log.Info("job started", "job_id", job.ID, "lease_token", job.LeaseToken,
				"queue", job.Queue, "type", job.Type, "attempt", job.Attempt)
			start := time.Now()
			err := next(ctx, job)
			if err != nil {
				log.Info("job failed", "job_id", job.ID, "lease_token", job.LeaseToken, "err", err, "duration", time.Since(start))
			} else {
				log.Debug("job done", "job_id", job.ID, "lease_token", job.LeaseToken, "duration", time.Since(start))
			}
			return err
		}
	}
}

// Daemon is a running workerd: a broker client, a worker with the built-in
// handlers, and an optional metrics endpoint.
type Daemon struct {
	cfg    Config
	Client *client.Client
	// Worker is exposed so embedders can add handlers and middlewares
	// before Run.
	Worker   *worker.Worker
	Registry *prometheus.Registry
}

// New builds a daemon from cfg; nothing connects until Run.
func New(cfg Config) (*Daemon, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("workerd: no broker addresses")
	}
	if len(cfg.Queues) == 0 {
		return nil, errors.New("workerd: no queues")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	cl, err := client.New(cfg.Brokers, cfg.ClientOptions)
	if err != nil {
		return nil, err
	}
	w := worker.New(cl, worker.Options{
		Queues:          cfg.Queues,
		WorkerID:        cfg.WorkerID,
		PollWait:        cfg.PollWait,
		UseFetch:        cfg.UseFetch,
		LeaseDuration:   cfg.LeaseDuration,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Recorder:        cfg.Recorder,
		Logger:          cfg.Logger,
		Registerer:      cfg.Registry,
		OnSettle:        cfg.OnSettle,
	})
	w.Use(LogStarts(cfg.Logger))
	Register(w)
	return &Daemon{cfg: cfg, Client: cl, Worker: w, Registry: cfg.Registry}, nil
}

// Run serves metrics (when configured) and works jobs until ctx is
// cancelled, then shuts down gracefully and closes the client.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Client.Close()
	log := d.cfg.Logger
	if d.cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", d.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("workerd: metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server failed", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("metrics listening", "addr", ln.Addr().String())
	}
	log.Info("workerd running", "worker_id", d.Worker.ID(), "brokers", d.cfg.Brokers, "queues", d.cfg.Queues)
	return d.Worker.Run(ctx)
}
