package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
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

// Fair queuing per tenant: each job carries its tenant as concurrency
// key. The broker's dispatcher serves the queue's keys round-robin, so a
// tenant that enqueued 10,000 jobs does not delay another's 10, and with
// `brokerctl config set queue exports --max-in-flight-per-key 2` no tenant
// has more than 2 jobs running at once across all workers.
func ExampleWithConcurrencyKey() {
	spec := client.NewJob("exports", "csv", []byte("report-42"),
		client.WithConcurrencyKey("tenant-acme"))
	fmt.Println(spec.Queue, spec.ConcurrencyKey)
	// Output: exports tenant-acme
}

// A periodic job: every night at 02:30 Paris time, one "nightly" job in
// the reports queue, started within a minute of the tick (jitter), never
// two at once (the previous run still going makes the tick skip), and
// after an outage at most one missed night caught up. The cluster fires
// each tick as one Raft command keyed by (schedule, tick), so a leader
// change never duplicates or loses a night. Putting the same spec again
// changes nothing, so this runs safely at every deploy.
func ExampleClient_PutSchedule() {
	c, err := client.New([]string{"127.0.0.1:7001"}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	spec := client.CronSchedule("nightly-report", "30 2 * * *",
		client.NewJob("reports", "nightly", nil, client.WithMaxAttempts(3)))
	spec.TimeZone = "Europe/Paris"
	spec.Jitter = durationpb.New(time.Minute)
	spec.Overlap = raftqv1.OverlapPolicy_OVERLAP_POLICY_SKIP
	spec.CatchUp = 1
	s, changed, err := c.PutSchedule(ctx, spec)
	if err != nil {
		log.Fatal(err) // a bad cron expression or time zone is InvalidArgument
	}
	fmt.Println("changed:", changed, "next tick:", s.NextTick.AsTime())

	// Each job names its schedule and tick.
	if s.LastJobId != "" {
		job, err := c.GetJob(ctx, s.LastJobId, 0)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(job.Schedule, job.ScheduleTick.AsTime())
	}
}

// Timeouts: an order confirmation is useless after ten minutes, so if no
// worker has started it by then it goes dead ("schedule-to-start
// timeout") instead of running late; and an attempt may take two minutes
// at most, even if its worker is stuck and keeps extending its 30 s
// lease: the broker then fails the attempt (the worker loses the lease)
// and the job is retried after its back-off, or dead-lettered on its last
// attempt. start_to_close must be at least the lease duration.
func ExampleWithStartToClose() {
	spec := client.NewJob("orders", "confirm", []byte("order-7"),
		client.WithLeaseDuration(30*time.Second),
		client.WithScheduleToStart(10*time.Minute),
		client.WithStartToClose(2*time.Minute),
		client.WithMaxAttempts(3))
	fmt.Println(spec.ScheduleToStart.AsDuration(), spec.StartToClose.AsDuration())
	// Output: 10m0s 2m0s
}

// Uniqueness by state: at most one "rebuild-index" job per tenant is
// queued or running at a time. While one is, enqueueing another returns
// its id (duplicate = true); once it has finished, the key is free again.
// UniqueReject refuses instead, and UniqueDebounce moves a still-delayed
// job to the new run time and payload, so a burst of edits triggers one
// rebuild a minute after the last of them.
func ExampleWithUniqueKey() {
	c, err := client.New([]string{"127.0.0.1:7001"}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Debounce: each edit pushes the pending rebuild a minute further.
	id, pending, err := c.EnqueueOne(ctx, "search", "rebuild-index", []byte("tenant-acme"),
		client.WithUniqueKey("rebuild/tenant-acme", client.UniqueDebounce),
		client.WithDelay(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rebuild", id, "was already pending:", pending)

	// Reject: ALREADY_EXISTS names the job holding the key.
	_, err = c.Enqueue(ctx, client.NewJob("search", "rebuild-index", nil,
		client.WithUniqueKey("rebuild/tenant-acme", client.UniqueReject)))
	if existing := raftqerr.ExistingJobID(err); existing != "" {
		fmt.Println("already queued or running:", existing)
	}
}

// A workflow: fetch → {resize, thumbnail} → publish, submitted in one
// atomic Enqueue. publish waits (JOB_STATE_WAITING) until both its parents
// succeeded; if either ends dead, publish is cancelled. Jobs of one call
// refer to each other by name; a cycle or an unknown name refuses the whole
// call with InvalidArgument and creates nothing.
func ExampleDependsOnNames() {
	specs := []*raftqv1.JobSpec{
		client.NewJob("media", "fetch", []byte("s3://in/cat.jpg"), client.WithName("fetch")),
		client.NewJob("media", "resize", nil, client.WithName("resize"), client.DependsOnNames("fetch")),
		client.NewJob("media", "thumbnail", nil, client.WithName("thumb"), client.DependsOnNames("fetch")),
		client.NewJob("media", "publish", nil, client.DependsOnNames("resize", "thumb")),
	}
	// c.Enqueue(ctx, specs...) returns the four ids in this order.
	fmt.Println(specs[3].DependsOnNames)
	// Output: [resize thumb]
}

// A chain: each step waits for the one before; a failure cancels the rest.
func ExampleChain() {
	steps := client.Chain(
		client.NewJob("etl", "extract", nil),
		client.NewJob("etl", "transform", nil),
		client.NewJob("etl", "load", nil),
	)
	// c.Enqueue(ctx, steps...)
	fmt.Println(steps[1].DependsOnNames, steps[2].DependsOnNames)
	// Output: [chain-0] [chain-1]
}

// A batch with callbacks: "report" runs once every part succeeded (it is
// cancelled if one fails), "cleanup" once every part has finished,
// whatever the outcome (its worker sees Job.ParentFailed).
func ExampleBatch() {
	b := &client.Batch{Name: "import",
		Jobs: []*raftqv1.JobSpec{
			client.NewJob("import", "part", []byte("1")),
			client.NewJob("import", "part", []byte("2")),
		},
		OnSuccess:  []*raftqv1.JobSpec{client.NewJob("import", "report", nil)},
		OnComplete: []*raftqv1.JobSpec{client.NewJob("import", "cleanup", nil)},
	}
	specs := b.Specs() // c.Enqueue(ctx, specs...)
	fmt.Println(len(specs), specs[2].DependsOnNames, specs[3].DependencyPolicy)
	// Output: 4 [import/0 import/1] DEPENDENCY_POLICY_RUN_ANYWAY
}
