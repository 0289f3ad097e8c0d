// Command flowcontrol shows raftq's flow-control options with the Go SDK
// against a running cluster: unique jobs (return existing, reject,
// debounce), a schedule-to-start timeout, a start-to-close timeout that
// fails a stuck attempt even though its lease is kept alive, and a worker
// pool taking jobs from two queues by weight. It prints one line per
// finding; example_test.go runs it against an in-process cluster.
//
//	go run ./examples/flowcontrol --brokers 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
	"github.com/raftq/raftq/worker"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103", "broker addresses")
	prefix := flag.String("prefix", "fc", "prefix of the queues this example uses")
	flag.Parse()
	c, err := client.New(strings.Split(*brokers, ","), client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, c, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "flowcontrol:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c *client.Client, p string) error {
	if err := unique(ctx, c, p+"-search"); err != nil {
		return err
	}
	if err := timeouts(ctx, c, p); err != nil {
		return err
	}
	return weighted(ctx, c, p)
}

// unique: one pending rebuild per tenant, pushed back by each edit.
func unique(ctx context.Context, c *client.Client, q string) error {
	key := client.WithUniqueKey("rebuild/acme", client.UniqueDebounce)
	first, _, err := c.EnqueueOne(ctx, q, "rebuild", []byte("edit 1"), key, client.WithDelay(time.Hour))
	if err != nil {
		return err
	}
	second, dup, err := c.EnqueueOne(ctx, q, "rebuild", []byte("edit 2"), key, client.WithDelay(2*time.Hour))
	if err != nil {
		return err
	}
	j, err := c.GetJob(ctx, first, 0)
	if err != nil {
		return err
	}
	fmt.Printf("debounce: same job %v, duplicate %v, payload %q\n", second == first, dup, j.Payload)
	_, err = c.Enqueue(ctx, client.NewJob(q, "rebuild", nil, client.WithUniqueKey("rebuild/acme", client.UniqueReject)))
	fmt.Printf("reject: ALREADY_EXISTS names the pending job %v\n", raftqerr.ExistingJobID(err) == first)
	return nil
}

// timeouts: a job nobody starts in time dies; an attempt that hangs is
// failed though its worker keeps extending the lease.
func timeouts(ctx context.Context, c *client.Client, p string) error {
	late, _, err := c.EnqueueOne(ctx, p+"-unworked", "t", nil, client.WithScheduleToStart(200*time.Millisecond))
	if err != nil {
		return err
	}
	j, err := waitDone(ctx, c, late)
	if err != nil {
		return err
	}
	fmt.Printf("schedule-to-start: %s, %q\n", stateName(j.State), j.LastError)

	stuck, _, err := c.EnqueueOne(ctx, p+"-stuck", "hang", nil, client.WithLeaseDuration(time.Second),
		client.WithStartToClose(2*time.Second), client.WithMaxAttempts(1))
	if err != nil {
		return err
	}
	w := worker.New(c, worker.Options{Queues: []worker.QueueConfig{{Name: p + "-stuck"}}})
	lost := make(chan error, 1)
	w.Handle("hang", func(ctx context.Context, job *worker.Job) error {
		<-ctx.Done() // the worker extends the lease all along
		lost <- context.Cause(ctx)
		return ctx.Err()
	})
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(wctx) }()
	j, err = waitDone(ctx, c, stuck)
	if err != nil {
		return err
	}
	cause := <-lost
	stop()
	fmt.Printf("start-to-close: %s, %q, handler saw lease lost %v\n", stateName(j.State), j.LastError, errors.Is(cause, worker.ErrLeaseLost))
	return nil
}

// weighted: a pool of one slot over two full queues, weights 3:1.
func weighted(ctx context.Context, c *client.Client, p string) error {
	hi, lo := p+"-critical", p+"-low"
	var specs []*raftqv1.JobSpec
	for i := 0; i < 60; i++ {
		specs = append(specs, client.NewJob(hi, "work", nil), client.NewJob(lo, "work", nil))
	}
	if _, err := c.Enqueue(ctx, specs...); err != nil {
		return err
	}
	w := worker.New(c, worker.Options{Queues: []worker.QueueConfig{{Name: "pool", Concurrency: 1,
		Weights: map[string]int{hi: 3, lo: 1}}}})
	var mu sync.Mutex
	counts := map[string]int{}
	done := make(chan struct{})
	w.Handle("work", func(ctx context.Context, job *worker.Job) error {
		mu.Lock()
		defer mu.Unlock()
		if counts[hi]+counts[lo] < 40 {
			if counts[job.Queue]++; counts[hi]+counts[lo] == 40 {
				close(done)
			}
		}
		return nil
	})
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(wctx) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	fmt.Printf("weights 3:1: first 40 jobs, %d critical and %d low\n", counts[hi], counts[lo])
	return nil
}

func waitDone(ctx context.Context, c *client.Client, id string) (*raftqv1.Job, error) {
	for {
		j, err := c.GetJob(ctx, id, 0)
		if err != nil {
			return nil, err
		}
		if j.State == raftqv1.JobState_JOB_STATE_DEAD || j.State == raftqv1.JobState_JOB_STATE_SUCCEEDED {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func stateName(s raftqv1.JobState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}
