package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Enqueue one job with options, then read it back and cancel it. The
// client finds the leader among the given brokers and retries an
// indeterminate enqueue with the same idempotency key.
func Example() {
	c, err := client.New([]string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	id, duplicate, err := c.EnqueueOne(ctx, "emails", "send-welcome", []byte(`{"user":42}`),
		client.WithPriority(5),
		client.WithDelay(time.Minute),
		client.WithMaxAttempts(10),
		client.WithLeaseDuration(30*time.Second),
		client.WithIdempotencyKey("welcome-42"), // the same user never gets two
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("job", id, "already existed:", duplicate)

	job, err := c.GetJob(ctx, id, raftqv1.Consistency_CONSISTENCY_UNSPECIFIED)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", job.State)

	if _, err := c.CancelJob(ctx, id); err != nil {
		log.Fatal(err)
	}
}

// Enqueue a batch atomically: every job is committed in one Raft entry, or
// none is. Keep the specs to retry with: Enqueue writes an idempotency key
// into each, so a retry after an error returns the same jobs.
func ExampleClient_Enqueue() {
	c, err := client.New([]string{"127.0.0.1:7001"}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	specs := []*raftqv1.JobSpec{
		client.NewJob("thumbnails", "resize", []byte("img-1.png")),
		client.NewJob("thumbnails", "resize", []byte("img-2.png"), client.WithRunAt(time.Now().Add(time.Hour))),
	}
	var res []*raftqv1.EnqueueResult
	for attempt := 0; attempt < 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err = c.Enqueue(ctx, specs...)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range res {
		fmt.Println(r.JobId, r.Duplicate)
	}
}

// NewJob builds a spec without wire types.
func ExampleNewJob() {
	spec := client.NewJob("reports", "monthly", []byte("2026-10"),
		client.WithMaxAttempts(3),
		client.WithRetry(time.Second, time.Minute),
		client.WithIdempotencyKey("monthly-2026-10"))
	fmt.Println(spec.Queue, spec.Type, spec.MaxAttempts, spec.Retry.InitialBackoff.AsDuration(), spec.IdempotencyKey)
	// Output: reports monthly 3 1s monthly-2026-10
}
