package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// QueueConfig names a queue to work and how many of its jobs may run at
// once. Each queue has its own fetch loop and its own slots, so a busy
// queue cannot starve another.
type QueueConfig struct {
	Name string
	// Concurrency is how many of the queue's jobs run at once (default 1).
	Concurrency int
	// Weights, when set, make this entry a pool of Concurrency slots
	// working several queues with weighted selection (asynq's weighted
	// priority) instead of one queue: the broker picks each job's queue in
	// proportion to its weight (1..1000) among the named queues that have
	// jobs ready, so with {"critical": 3, "low": 1} and both full, three
	// jobs in four are critical ones, yet low is never starved. Name then
	// only labels the pool in logs and metrics. Without Weights, queues
	// are strictly separate: each entry fetches only its own.
	Weights map[string]int
}

// fetchTarget is the queues and weights a QueueConfig's fetches name.
func (q QueueConfig) fetchTarget() ([]string, map[string]int32) {
	if len(q.Weights) == 0 {
		return []string{q.Name}, nil
	}
	names := make([]string, 0, len(q.Weights))
	ws := make(map[string]int32, len(q.Weights))
	for n, wt := range q.Weights {
		names = append(names, n)
		ws[n] = int32(wt)
	}
	sort.Strings(names)
	return names, ws
}

// Options configure a Worker. Zero values take the documented defaults.
type Options struct {
	// Queues to work, each with its concurrency. Required.
	Queues []QueueConfig
	// WorkerID names this worker to the broker (it shows as the job's
	// leased_by) and to the Recorder. Default: hostname-pid-random.
	WorkerID string
	// FetchBatch caps the jobs one Fetch asks for (default: the queue's
	// concurrency). A fetch never asks for more jobs than there are free
	// slots, so no leased job waits in a local buffer while its lease runs.
	FetchBatch int
	// PollWait is how long one Fetch waits on the broker for a job (default
	// 30s). Longer means fewer idle calls; it does not delay shutdown much,
	// since an idle fetch is abandoned after a short grace.
	PollWait time.Duration
	// LeaseDuration, when set, overrides the jobs' own lease duration for
	// leases this worker takes.
	LeaseDuration time.Duration
	// CancelPoll is how often a running job's cancel flag is read between
	// lease extensions (default 500ms, so a cancel reaches the handler
	// within a second; negative disables: cancellation is then
	// seen on the next extension, at a third of the lease). Reads are
	// stale reads on the broker the client talks to: no Raft write. Jobs
	// received on a Consume stream are not polled while their stream
	// lives: the broker pushes their cancels; they are polled from when
	// the stream ends.
	CancelPoll time.Duration
	// UseFetch makes the worker long-poll with Fetch instead of opening a
	// Consume stream per queue. By default the worker consumes, and falls
	// back to Fetch by itself on a broker without Consume.
	UseFetch bool
	// ShutdownTimeout is how long in-flight jobs may run on after Run's
	// context is cancelled (default 30s). Then their contexts are cancelled
	// with ErrShutdown and, after a one-second grace, the jobs are nacked
	// with no back-off so that another worker takes them at once.
	ShutdownTimeout time.Duration
	// SettleTimeout bounds recording an outcome and acking or nacking it,
	// including retries across a broker failover (default 30s). The calls
	// do not use Run's context, so they survive shutdown.
	SettleTimeout time.Duration
	// Recorder stores each attempt's outcome before the ack (default
	// NopRecorder).
	Recorder Recorder
	// Logger receives the worker's own logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, gets the worker's Prometheus metrics.
	Registerer prometheus.Registerer
	// OnSettle, when set, is called after each attempt is settled (acked,
	// nacked or dropped), from the goroutine that settled it. It is the
	// hook for audit logs and tests; keep it fast.
	OnSettle func(job *Job, s Settlement)
	// TracerProvider makes the worker's spans: one consumer span per
	// attempt ("raftq.run"), child of the producer's span whose context the
	// job carries, and under it "raftq.store_result" and "raftq.ack" (or
	// "raftq.nack"). The handler's context carries the run span, so spans
	// the handler starts, and calls it makes through instrumented clients,
	// join the job's trace. Default: otel's global provider (a no-op unless
	// the program set one).
	TracerProvider trace.TracerProvider
}

const (
	// fetchDrainGrace is how long a fetch in flight at shutdown may still
	// return jobs before it is cancelled. A fetch that is leasing jobs
	// answers within milliseconds; cancelling it mid-lease would strand
	// the jobs until their lease expires (see DESIGN.md).
	fetchDrainGrace = time.Second
	// abandonGrace is how long handlers get to return after their context
	// is cancelled at the end of ShutdownTimeout before the worker nacks
	// their jobs without waiting for them.
	abandonGrace    = time.Second
	minFetchBackoff = 100 * time.Millisecond
	maxFetchBackoff = 5 * time.Second
)

// Worker leases jobs from a broker cluster and runs them with registered
// handlers. Register handlers and middlewares, then call Run. Its methods
// are safe for concurrent use.
type Worker struct {
	c    *client.Client
	opts Options
	log  *slog.Logger
	m    *metrics
	// settle coalesces the acks, nacks and lease extensions of
	// concurrent jobs into batch calls (coalesce.go).
	settle *settlers

	// noConsume is set when a broker answered Consume with
	// UNIMPLEMENTED: every queue fetches from then on.
	noConsume atomic.Bool

	mu       sync.RWMutex
	handlers map[string]Handler
	mws      []Middleware
	running  bool
	tasks    map[*task]struct{}
	taskWG   sync.WaitGroup
}

// New returns a worker that talks to the cluster through c. The client
// does the leader following and retrying; the worker adds fetch back-off,
// lease keeping and the settle rules on top.
func New(c *client.Client, opts Options) *Worker {
	if opts.WorkerID == "" {
		opts.WorkerID = defaultWorkerID()
	}
	if opts.PollWait <= 0 {
		opts.PollWait = 30 * time.Second
	}
	if opts.CancelPoll == 0 {
		opts.CancelPoll = 500 * time.Millisecond
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.SettleTimeout <= 0 {
		opts.SettleTimeout = 30 * time.Second
	}
	if opts.Recorder == nil {
		opts.Recorder = NopRecorder{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Queues = append([]QueueConfig(nil), opts.Queues...)
	for i := range opts.Queues {
		if opts.Queues[i].Concurrency <= 0 {
			opts.Queues[i].Concurrency = 1
		}
	}
	return &Worker{
		c:        c,
		opts:     opts,
		log:      opts.Logger.With("worker_id", opts.WorkerID),
		m:        newMetrics(opts.Registerer),
		settle:   newSettlers(c),
		handlers: map[string]Handler{},
		tasks:    map[*task]struct{}{},
	}
}

func defaultWorkerID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "worker"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ID returns the worker id given to the broker.
func (w *Worker) ID() string { return w.opts.WorkerID }

// Handle registers h for jobs of type jobType, replacing any earlier one.
// Jobs of a type with no handler fail with a retryable error, so that a
// worker of a newer version can still take them. Handle may be called
// while the worker runs.
func (w *Worker) Handle(jobType string, h Handler) {
	if jobType == "" || h == nil {
		panic("worker: Handle needs a job type and a handler")
	}
	w.mu.Lock()
	w.handlers[jobType] = h
	w.mu.Unlock()
}

// Use adds middlewares around every handler, the first added outermost.
func (w *Worker) Use(mws ...Middleware) {
	w.mu.Lock()
	w.mws = append(w.mws, mws...)
	w.mu.Unlock()
}

// handler returns the handler of jobType wrapped in the middlewares.
func (w *Worker) handler(jobType string) Handler {
	w.mu.RLock()
	h, ok := w.handlers[jobType]
	mws := w.mws
	w.mu.RUnlock()
	if !ok {
		h = func(context.Context, *Job) error {
			return fmt.Errorf("worker: no handler registered for job type %q", jobType)
		}
	}
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Run works the configured queues until ctx is cancelled, then shuts down
// gracefully: it stops fetching, lets in-flight jobs finish for up to
// Options.ShutdownTimeout, nacks the rest so they come back at once, and
// returns when every leased job is settled. It returns nil after a
// graceful shutdown, or an error at once when the options are unusable.
// Broker failures never end Run: it backs off and keeps trying.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.validate(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.running {
		w.mu.Unlock()
		return errors.New("worker: Run called while already running")
	}
	w.running = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.running = false
		w.mu.Unlock()
	}()

	base := context.WithoutCancel(ctx)
	w.log.Info("worker started", "queues", w.opts.Queues)
	var fetchers sync.WaitGroup
	for _, q := range w.opts.Queues {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			w.queueLoop(ctx, base, q)
		}()
	}
	<-ctx.Done()
	deadline := time.Now().Add(w.opts.ShutdownTimeout)
	w.log.Info("worker shutting down", "in_flight", w.inFlight(), "timeout", w.opts.ShutdownTimeout)
	fetchers.Wait()

	done := make(chan struct{})
	go func() {
		w.taskWG.Wait()
		close(done)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		w.log.Info("worker stopped")
		return nil
	case <-timer.C:
	}
	tasks := w.snapshot()
	w.log.Warn("shutdown timeout: cancelling jobs still running", "jobs", len(tasks))
	for _, t := range tasks {
		t.cancel(ErrShutdown)
	}
	grace := time.NewTimer(abandonGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		for _, t := range w.snapshot() {
			t.abandon()
		}
		<-done
	}
	w.log.Info("worker stopped")
	return nil
}

func (w *Worker) validate() error {
	if w.c == nil {
		return errors.New("worker: no client")
	}
	if len(w.opts.Queues) == 0 {
		return errors.New("worker: no queues configured")
	}
	seen := map[string]bool{}
	for _, q := range w.opts.Queues {
		if q.Name == "" {
			return errors.New("worker: a queue has no name")
		}
		if seen[q.Name] {
			return fmt.Errorf("worker: queue %q listed twice", q.Name)
		}
		seen[q.Name] = true
		for n, wt := range q.Weights {
			if n == "" || wt < 1 || wt > 1000 {
				return fmt.Errorf("worker: pool %q: weight %d for queue %q (a queue name and a weight from 1 to 1000 are needed)", q.Name, wt, n)
			}
		}
	}
	w.mu.RLock()
	n := len(w.handlers)
	w.mu.RUnlock()
	if n == 0 {
		return errors.New("worker: no handlers registered")
	}
	return nil
}

func (w *Worker) inFlight() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.tasks)
}

func (w *Worker) snapshot() []*task {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]*task, 0, len(w.tasks))
	for t := range w.tasks {
		out = append(out, t)
	}
	return out
}

// queueLoop leases jobs of one queue whenever it has free slots: on a
// Consume stream (consume.go), or with Fetch when asked to or when the
// broker has no Consume. A run slot is taken before a job is asked for
// (a fetch, or a credit) and given back when the handler returns; the job
// then holds a settle slot while its outcome is recorded and acked. So at
// most Concurrency handlers run, the next job's fetch overlaps the
// previous job's ack (which is what makes concurrency 1 fast), and at most
// 2*Concurrency leases are held.
func (w *Worker) queueLoop(ctx, base context.Context, q QueueConfig) {
	slots := make(chan struct{}, q.Concurrency)
	settleSlots := make(chan struct{}, q.Concurrency)
	if !w.opts.UseFetch && !w.noConsume.Load() {
		if !w.consumeLoop(ctx, base, q, slots, settleSlots) {
			return
		}
	}
	w.fetchLoop(ctx, base, q, slots, settleSlots)
}

// fetchLoop is queueLoop with Fetch long polls.
func (w *Worker) fetchLoop(ctx, base context.Context, q QueueConfig, slots, settleSlots chan struct{}) {
	batch := w.opts.FetchBatch
	if batch <= 0 || batch > q.Concurrency {
		batch = q.Concurrency
	}
	backoff := minFetchBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		n := 1
	grab:
		for n < batch {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break grab
			}
		}
		jobs, recvAt, err := w.fetch(ctx, base, q, n)
		for i := len(jobs); i < n; i++ {
			<-slots
		}
		if err != nil {
			w.m.fetches.WithLabelValues(q.Name, "error").Inc()
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("fetch failed; backing off", "queue", q.Name, "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if backoff *= 2; backoff > maxFetchBackoff {
				backoff = maxFetchBackoff
			}
			continue
		}
		backoff = minFetchBackoff
		if len(jobs) == 0 {
			w.m.fetches.WithLabelValues(q.Name, "empty").Inc()
			continue
		}
		w.m.fetches.WithLabelValues(q.Name, "jobs").Inc()
		w.m.fetched.WithLabelValues(q.Name).Add(float64(len(jobs)))
		stopping := ctx.Err() != nil
		for i, pj := range jobs {
			var slot chan struct{}
			if i < n {
				slot = slots
			}
			w.start(base, pj, recvAt, slot, settleSlots, stopping || i >= n, nil)
		}
	}
}

// fetch long-polls for up to n jobs. It does not use ctx for the call:
// when ctx ends, the fetch gets fetchDrainGrace to come back with the jobs
// it may be leasing right now before it is cancelled.
func (w *Worker) fetch(ctx, base context.Context, q QueueConfig, n int) ([]*raftqv1.Job, time.Time, error) {
	fctx, cancel := context.WithCancel(base)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(min(fetchDrainGrace, w.opts.ShutdownTimeout))
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-fctx.Done():
		}
	})
	defer stop()
	queues, weights := q.fetchTarget()
	req := &raftqv1.FetchRequest{
		Queues:       queues,
		QueueWeights: weights,
		MaxJobs:      int32(n),
		MaxWait:      durationpb.New(w.opts.PollWait),
		WorkerId:     w.opts.WorkerID,
	}
	if w.opts.LeaseDuration > 0 {
		req.LeaseDuration = durationpb.New(w.opts.LeaseDuration)
	}
	jobs, err := w.c.Fetch(fctx, req)
	return jobs, time.Now(), err
}

// start tracks a leased job and runs it, or, when the worker is stopping
// (or the broker sent more jobs than asked), gives it straight back.
//
// sess is the Consume stream the job came on (nil: a Fetch): while it
// lives the broker pushes the job's cancel, so the keeper does not poll.
func (w *Worker) start(base context.Context, pj *raftqv1.Job, recvAt time.Time, slot, settleSlots chan struct{}, giveBack bool, sess *session) {
	job := jobFromProto(pj, w.opts.WorkerID, w.opts.LeaseDuration)
	if job.LeaseDuration <= 0 {
		job.LeaseDuration = 30 * time.Second // the broker always sets it; be safe
	}
	t := &task{
		w:           w,
		job:         job,
		slot:        slot,
		settleSlots: settleSlots,
		base:        base,
		sess:        sess,
		stopKeep:    make(chan struct{}),
		deadline:    recvAt.Add(job.LeaseDuration),
	}
	job.report = t.reportProgress
	t.ctx, t.cancelFn = context.WithCancelCause(t.startSpan(base, pj))
	w.mu.Lock()
	w.tasks[t] = struct{}{}
	w.taskWG.Add(1)
	w.mu.Unlock()
	w.m.inFlight.WithLabelValues(job.Queue).Inc()
	go t.keep()
	if giveBack {
		t.cancel(ErrShutdown)
		if t.claim() {
			go t.settle(ErrShutdown, time.Now(), 0)
		}
		return
	}
	t.ran = true
	go t.run(w.handler(job.Type))
}

// done is called once per task when its settlement is over.
func (w *Worker) done(t *task) {
	defer t.span.End()
	close(t.stopKeep)
	t.cancel(context.Canceled)
	t.releaseRunSlot()
	if t.holdsSettle {
		<-t.settleSlots
	}
	w.m.inFlight.WithLabelValues(t.job.Queue).Dec()
	w.mu.Lock()
	delete(w.tasks, t)
	w.mu.Unlock()
	w.taskWG.Done()
}
