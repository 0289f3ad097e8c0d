package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/worker"
)

// A worker with two queues, one handler, a logging middleware and
// Prometheus metrics, shut down gracefully on SIGTERM.
func Example() {
	c, err := client.New([]string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w := worker.New(c, worker.Options{
		Queues: []worker.QueueConfig{
			{Name: "emails", Concurrency: 8},
			{Name: "reports", Concurrency: 2},
		},
		ShutdownTimeout: 20 * time.Second,
		Registerer:      prometheus.DefaultRegisterer,
	})
	w.Handle("send-welcome", func(ctx context.Context, job *worker.Job) error {
		if len(job.Payload) == 0 {
			return worker.Permanent(errors.New("empty payload")) // dead-letter: no retry helps
		}
		// ... send the email, honouring ctx ...
		job.SetOutput([]byte("sent"))
		return nil // ack
	})
	w.Use(func(next worker.Handler) worker.Handler {
		return func(ctx context.Context, job *worker.Job) error {
			slog.Info("job", "id", job.ID, "type", job.Type, "attempt", job.Attempt)
			return next(ctx, job)
		}
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Classifying errors: a plain error is retried after the job's back-off,
// RetryAfter picks the delay, Permanent dead-letters at once.
func ExamplePermanent() {
	classify := func(err error) string {
		if worker.IsPermanent(err) {
			return "dead-letter"
		}
		if d, ok := worker.RetryDelay(err); ok {
			return "retry after " + d.String()
		}
		return "retry with back-off"
	}
	fmt.Println(classify(errors.New("connection reset")))
	fmt.Println(classify(worker.RetryAfter(errors.New("429 too many requests"), 30*time.Second)))
	fmt.Println(classify(fmt.Errorf("parse: %w", worker.Permanent(errors.New("bad json")))))
	// Output:
	// retry with back-off
	// retry after 30s
	// dead-letter
}

// A middleware that bounds every attempt, and a handler that tells why its
// context ended.
func ExampleWorker_Use() {
	c, _ := client.New([]string{"127.0.0.1:7001"}, client.Options{})
	w := worker.New(c, worker.Options{Queues: []worker.QueueConfig{{Name: "default", Concurrency: 4}}})
	w.Use(func(next worker.Handler) worker.Handler {
		return func(ctx context.Context, job *worker.Job) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			return next(ctx, job)
		}
	})
	w.Handle("crunch", func(ctx context.Context, job *worker.Job) error {
		<-ctx.Done()
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, worker.ErrJobCancelled):
			return cause // nacked; the broker finishes the job as cancelled
		case errors.Is(cause, worker.ErrLeaseLost):
			return cause // another worker has the job; this result is dropped
		default:
			return ctx.Err()
		}
	})
}

// Weighted queues (asynq's weighted priority): one pool of 10 slots
// working three queues, where each job's queue is picked by the broker in
// proportion to its weight among the queues with jobs ready: with all
// three full, 6 critical jobs run for every 3 default and 1 low, yet low
// is never starved. Without Weights each entry works only its own queue
// (a strict split of slots). workerd: --queues 'critical=6|default=3|low=1:10'.
func ExampleQueueConfig_weights() {
	c, err := client.New([]string{"127.0.0.1:7001"}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w := worker.New(c, worker.Options{
		Queues: []worker.QueueConfig{{
			Name:        "main", // labels the pool in logs and metrics
			Concurrency: 10,
			Weights:     map[string]int{"critical": 6, "default": 3, "low": 1},
		}},
	})
	w.Handle("work", func(ctx context.Context, job *worker.Job) error {
		// job.Queue says which of the three it came from. A job with a
		// start-to-close timeout shows the broker's bound for this attempt:
		if !job.AttemptDeadline.IsZero() {
			slog.Info("must finish by", "deadline", job.AttemptDeadline)
		}
		return nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Progress: a handler reports how far its attempt has got, fenced by its
// lease token like an extension. GetJob, `brokerctl get` and the dashboard
// show the last report; the next attempt starts without one. Each report is
// one Raft entry, so report every few seconds, not per item.
func ExampleJob_Progress() {
	c, err := client.New([]string{"127.0.0.1:7001"}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w := worker.New(c, worker.Options{Queues: []worker.QueueConfig{{Name: "reports", Concurrency: 2}}})
	w.Handle("render", func(ctx context.Context, job *worker.Job) error {
		const pages = 7
		last := time.Now()
		for p := 1; p <= pages; p++ {
			// ... render page p ...
			if time.Since(last) > 5*time.Second || p == pages {
				if err := job.Progress(ctx, float64(p)/pages, fmt.Sprintf("page %d of %d", p, pages)); err != nil {
					return err // the lease is gone: another attempt owns the job
				}
				last = time.Now()
			}
		}
		return nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
