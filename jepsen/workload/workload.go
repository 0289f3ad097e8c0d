// Package workload is what the harness's clients do while the nemesis
// works: producers enqueue unique values (per-producer sequence numbers,
// for lost-middle), workers lease jobs, store each result in svcd under the
// lease token and then ack (the flow of the worker SDK), zombies hold a job
// past its lease and then ack with the stale token (a broken worker the
// broker must fence off), and readers issue linearizable GetJob calls. Every
// call becomes one history.Op. Drain then runs the workers until every
// value enqueued OK is done.
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/jepsen/checker"
	"github.com/raftq/raftq/jepsen/history"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
)

// Config sizes the workload.
type Config struct {
	Producers, Workers, Readers int
	// Rate is enqueues per second over all producers.
	Rate float64
	// ReadRate is GetJob calls per second per reader.
	ReadRate float64
	// Queues are the harness's own queues (at least one): producers spread
	// their values over them in turn and worker w works Queues[w mod
	// len]. On a cluster of several Raft groups they are chosen so that
	// each lands in another group (placement.QueuesPerGroup), so every
	// group gets load.
	Queues []string
	// Groups is the cluster's Raft group count (0 or 1: one group); ops
	// record their queue's group (history.Op.Group).
	Groups int
	// Lease is the lease duration workers ask for: short, so that jobs of
	// crashed workers come back quickly.
	Lease time.Duration
	// Work is the longest a worker "runs" a job.
	Work time.Duration
	// ZombieProb is the share of deliveries handled as a zombie.
	ZombieProb float64
	Seed       int64
	// WorkerdQueue, when set, receives WorkerdShare of the values as echo
	// jobs for workerd processes (black boxes: their fetches and acks are
	// not in the history; svcd's rows say what came out).
	WorkerdQueue string
	WorkerdShare float64
}

// Runner runs one workload against a cluster and svcd.
type Runner struct {
	cfg   Config
	rec   *history.Recorder
	addrs []string
	svcd  string

	// CrashAfterStore counts pending worker crashes between the result
	// write and the ack (the worker-side crash point).
	CrashAfterStore atomic.Int32
	zombies         atomic.Bool
	nZombies        atomic.Int32

	mu      sync.Mutex
	recent  []string          // recently enqueued job ids, for readers
	pending map[string]string // value -> job id, enqueued OK and not yet done
	done    map[string]bool   // values whose job is known succeeded

	prodCancel context.CancelFunc
	allCancel  context.CancelFunc
	prodWG     sync.WaitGroup
	allWG      sync.WaitGroup
}

// New prepares a runner; Start starts it.
func New(cfg Config, rec *history.Recorder, brokerAddrs []string, svcdAddr string) *Runner {
	r := &Runner{cfg: cfg, rec: rec, addrs: brokerAddrs, svcd: svcdAddr, pending: map[string]string{}, done: map[string]bool{}}
	r.zombies.Store(cfg.ZombieProb > 0)
	return r
}

// Queues are the harness's own queues (Config.Queues).
func (r *Runner) Queues() []string { return append([]string(nil), r.cfg.Queues...) }

func (r *Runner) newClient() *client.Client {
	c, err := client.New(r.addrs, client.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, CallTimeout: 10 * time.Second})
	if err != nil {
		panic(err) // only for an empty address list
	}
	return c
}

// Start starts producers, workers and readers.
func (r *Runner) Start() error {
	res, err := results.Dial(r.svcd)
	if err != nil {
		return err
	}
	allCtx, allCancel := context.WithCancel(context.Background())
	prodCtx, prodCancel := context.WithCancel(allCtx)
	r.allCancel, r.prodCancel = allCancel, prodCancel
	for p := 0; p < r.cfg.Producers; p++ {
		r.prodWG.Add(1)
		go r.producer(prodCtx, p)
	}
	for w := 0; w < r.cfg.Workers; w++ {
		r.allWG.Add(1)
		go r.worker(allCtx, w, res)
	}
	for i := 0; i < r.cfg.Readers; i++ {
		r.allWG.Add(1)
		go r.reader(allCtx, i)
	}
	go func() { <-allCtx.Done(); r.allWG.Wait(); res.Close() }()
	return nil
}

// StopProducers ends enqueueing and waits for the producers' last calls.
func (r *Runner) StopProducers() {
	r.prodCancel()
	r.prodWG.Wait()
}

// Calm stops the deliberate misbehaviour (zombies, worker crashes), for
// the drain.
func (r *Runner) Calm() {
	r.zombies.Store(false)
	r.CrashAfterStore.Store(0)
}

// Stop ends everything and waits.
func (r *Runner) Stop() {
	r.prodCancel()
	r.allCancel()
	r.prodWG.Wait()
	r.allWG.Wait()
}

// Pending is how many values enqueued OK are not known done yet.
func (r *Runner) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// classify turns a call's error into a history status: definite refusals
// fail, everything that may have happened is info.
func classify(err error) history.Status {
	if err == nil {
		return history.OK
	}
	if client.IsIndeterminate(err) {
		return history.Info
	}
	st, ok := status.FromError(err)
	if !ok {
		return history.Info // context expiry while retrying, dial errors
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists, codes.ResourceExhausted:
		return history.Fail
	case codes.Unavailable:
		if client.Reason(err) == raftqv1.ErrorDetail_NOT_LEADER {
			return history.Fail
		}
	}
	return history.Info
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func (r *Runner) producer(ctx context.Context, p int) {
	defer r.prodWG.Done()
	cli := r.newClient()
	defer cli.Close()
	interval := time.Duration(float64(time.Second) * float64(r.cfg.Producers) / r.cfg.Rate)
	rng := rand.New(rand.NewSource(r.cfg.Seed + int64(p)))
	next := time.Now()
	for seq := 0; ; seq++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			return
		}
		next = next.Add(interval)
		if time.Until(next) < -5*interval {
			next = time.Now() // do not burst after a stall
		}
		value := checker.Value(p, seq)
		queue, typ, own := r.cfg.Queues[seq%len(r.cfg.Queues)], "jepsen", true
		if r.cfg.WorkerdQueue != "" && rng.Float64() < r.cfg.WorkerdShare {
			queue, typ, own = r.cfg.WorkerdQueue, "echo", false
		}
		spec := client.NewJob(queue, typ, []byte(value), client.WithMaxAttempts(1000))
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := r.rec.Now()
		var res []*raftqv1.EnqueueResult
		var err error
		if p%2 == 1 {
			// Half the producers take the SDK's EnqueueOne path, a
			// pipelined EnqueueStream (fanned out over the groups by the
			// node it reaches), so faults hit that path too.
			var id string
			var dup bool
			if id, dup, err = cli.EnqueueOne(cctx, queue, typ, []byte(value), client.WithMaxAttempts(1000)); err == nil {
				res = []*raftqv1.EnqueueResult{{JobId: id, Duplicate: dup}}
			}
		} else {
			res, err = cli.Enqueue(cctx, spec)
		}
		end := r.rec.Now()
		cancel()
		op := history.Op{Process: p, Kind: history.Enqueue, Status: classify(err), Start: start, End: end, Value: value, Error: errText(err),
			Group: placement.Queue(queue, r.cfg.Groups)}
		if !own {
			op.Queue = queue
			if err == nil && len(res) == 1 {
				op.JobID, op.Dup = res[0].JobId, res[0].Duplicate
			}
			r.rec.Add(op)
			continue
		}
		if err == nil && len(res) == 1 {
			op.JobID, op.Dup = res[0].JobId, res[0].Duplicate
			r.mu.Lock()
			r.pending[value] = op.JobID
			r.recent = append(r.recent, op.JobID)
			if len(r.recent) > 256 {
				r.recent = r.recent[len(r.recent)-256:]
			}
			r.mu.Unlock()
		}
		r.rec.Add(op)
	}
}

func (r *Runner) markDone(value string) {
	r.mu.Lock()
	delete(r.pending, value)
	r.done[value] = true
	r.mu.Unlock()
}

func (r *Runner) worker(ctx context.Context, w int, res *results.Client) {
	defer r.allWG.Done()
	cli := r.newClient()
	defer cli.Close()
	proc := 100 + w
	rng := rand.New(rand.NewSource(r.cfg.Seed + int64(proc)))
	wid := fmt.Sprintf("w%d", w)
	// One queue per worker: a Fetch names queues of one group only (the
	// broker refuses a Fetch across groups).
	queue := r.cfg.Queues[w%len(r.cfg.Queues)]
	group := placement.Queue(queue, r.cfg.Groups)
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 6*time.Second)
		start := r.rec.Now()
		jobs, err := cli.Fetch(cctx, &raftqv1.FetchRequest{
			Queues: []string{queue}, MaxJobs: 1, WorkerId: wid,
			MaxWait: durationpb.New(time.Second), LeaseDuration: durationpb.New(r.cfg.Lease),
		})
		end := r.rec.Now()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.rec.Add(history.Op{Process: proc, Kind: history.Fetch, Status: classify(err), Start: start, End: end, Error: errText(err), Group: group})
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if len(jobs) == 0 {
			continue
		}
		j := jobs[0]
		r.rec.Add(history.Op{Process: proc, Kind: history.Fetch, Status: history.OK, Start: start, End: end,
			JobID: j.Id, Token: j.LeaseToken, Value: string(j.Payload), Group: group})
		if r.zombies.Load() && rng.Float64() < r.cfg.ZombieProb && r.zombieSlot() {
			// The zombie holds the job on its own goroutine, so the
			// worker goes on fetching (and may be the one that gets the
			// job again).
			r.allWG.Add(1)
			go func() {
				defer r.allWG.Done()
				defer r.nZombies.Add(-1)
				r.zombie(ctx, cli, proc, j)
			}()
			continue
		}
		r.work(ctx, cli, res, rng, proc, wid, j)
	}
}

// work is the worker SDK's flow: run, store the result under the lease
// token, ack; a stale-token refusal from svcd means the lease is lost, so
// no ack.
func (r *Runner) work(ctx context.Context, cli *client.Client, res *results.Client, rng *rand.Rand, proc int, wid string, j *raftqv1.Job) {
	if r.cfg.Work > 0 {
		time.Sleep(time.Duration(rng.Int63n(int64(r.cfg.Work))))
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	start := r.rec.Now()
	outcome, err := res.StoreResult(cctx, results.Result{
		JobID: j.Id, Queue: j.Queue, Type: j.Type, LeaseToken: j.LeaseToken, WorkerID: wid,
		Attempt: j.Attempts, Status: results.StatusSucceeded, Output: j.Payload,
	})
	end := r.rec.Now()
	cancel()
	op := history.Op{Process: proc, Kind: history.Store, Start: start, End: end, JobID: j.Id, Token: j.LeaseToken, Value: string(j.Payload), Error: errText(err)}
	switch {
	case err == nil:
		op.Status, op.State = history.OK, outcome.String()
	case errors.Is(err, results.ErrStaleToken):
		op.Status, op.State = history.Fail, "stale"
	case errors.Is(err, results.ErrInvalidArgument):
		op.Status = history.Fail
	default:
		op.Status = history.Info
	}
	r.rec.Add(op)
	if err != nil {
		return
	}
	if r.CrashAfterStore.Load() > 0 && r.CrashAfterStore.Add(-1) >= 0 {
		return // crashed after the result write, before the ack
	}
	if ctx.Err() != nil {
		return
	}
	cctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	start = r.rec.Now()
	err = cli.Ack(cctx, j.Id, j.LeaseToken)
	end = r.rec.Now()
	cancel()
	r.rec.Add(history.Op{Process: proc, Kind: history.Ack, Status: classify(err), Start: start, End: end, JobID: j.Id, Token: j.LeaseToken, Value: string(j.Payload), Error: errText(err)})
	if err == nil {
		r.markDone(string(j.Payload))
	}
}

// zombie holds a job past its lease, waits (reading the job) until another
// worker holds a newer lease or a few seconds pass, then acks with its
// stale token: the broker must refuse it.
func (r *Runner) zombie(ctx context.Context, cli *client.Client, proc int, j *raftqv1.Job) {
	wait := r.cfg.Lease + 20*time.Millisecond
	if j.LeaseDeadline != nil {
		if d := time.Until(j.LeaseDeadline.AsTime()) + 20*time.Millisecond; d > 0 && d < 2*r.cfg.Lease {
			wait = d
		}
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(wait):
	}
	deadline := time.Now().Add(3 * time.Second)
	var last history.Op
	seen := false
	for time.Now().Before(deadline) && ctx.Err() == nil {
		got, ok := r.read(proc, cli, j.Id)
		if ok {
			last, seen = got, true
			if got.State != history.NotFound && (got.Token > j.LeaseToken && got.State == "leased" || isTerminal(got.State)) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !seen || (last.State == "leased" && last.Token == j.LeaseToken) {
		// The broker has not ended this lease yet (its leader's clock may
		// run behind): an ack now would be legitimate, not a test of
		// fencing, and would complete the job without a result. Give up
		// the job like a crashed worker.
		return
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	start := r.rec.Now()
	err := cli.Ack(cctx, j.Id, j.LeaseToken)
	end := r.rec.Now()
	cancel()
	r.rec.Add(history.Op{Process: proc, Kind: history.Ack, Status: classify(err), Start: start, End: end, JobID: j.Id, Token: j.LeaseToken, Value: string(j.Payload), Zombie: true, Error: errText(err)})
}

// maxZombies bounds the zombies alive at once.
const maxZombies = 4

func (r *Runner) zombieSlot() bool {
	if r.nZombies.Add(1) > maxZombies {
		r.nZombies.Add(-1)
		return false
	}
	return true
}

func isTerminal(s string) bool { return s == "succeeded" || s == "dead" || s == "cancelled" }

// stateName is a job state as the history writes it ("leased").
func stateName(s raftqv1.JobState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATE_"))
}

// read is one linearizable GetJob, recorded when it has an answer (a read
// that failed changed nothing and says nothing).
func (r *Runner) read(proc int, cli *client.Client, id string) (history.Op, bool) {
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	start := r.rec.Now()
	job, err := cli.GetJob(cctx, id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	end := r.rec.Now()
	cancel()
	op := history.Op{Process: proc, Kind: history.Read, Status: history.OK, Start: start, End: end, JobID: id}
	switch {
	case err == nil:
		op.State, op.Token, op.Value = stateName(job.State), job.LeaseToken, string(job.Payload)
	case client.Reason(err) == raftqv1.ErrorDetail_NOT_FOUND:
		op.State = history.NotFound
	default:
		return op, false
	}
	return r.rec.Add(op), true
}

func (r *Runner) reader(ctx context.Context, i int) {
	defer r.allWG.Done()
	cli := r.newClient()
	defer cli.Close()
	rng := rand.New(rand.NewSource(r.cfg.Seed + 200 + int64(i)))
	interval := time.Duration(float64(time.Second) / r.cfg.ReadRate)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		r.mu.Lock()
		var id string
		if n := len(r.recent); n > 0 {
			id = r.recent[rng.Intn(n)]
		}
		r.mu.Unlock()
		if id != "" {
			r.read(200+i, cli, id)
		}
	}
}

// Drain waits until every value enqueued OK is done (acked, or read back
// as succeeded) and the queues (the workerd queue too) hold no ready,
// leased or scheduled job, or until timeout. It returns how many values are still not done.
func (r *Runner) Drain(timeout time.Duration) int {
	cli := r.newClient()
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	lastSweep := time.Now()
	for time.Now().Before(deadline) {
		if r.Pending() == 0 {
			queues := append([]string(nil), r.cfg.Queues...)
			if r.cfg.WorkerdQueue != "" {
				queues = append(queues, r.cfg.WorkerdQueue)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			st, err := cli.QueueStats(ctx, queues...)
			cancel()
			busy := err != nil
			for _, q := range st {
				busy = busy || q.Ready+q.Leased+q.Scheduled > 0
			}
			if !busy {
				return 0
			}
		}
		if time.Since(lastSweep) > 3*time.Second {
			// An ack that timed out may still have landed: read those jobs.
			lastSweep = time.Now()
			r.mu.Lock()
			var vals, ids []string
			for v, id := range r.pending {
				vals, ids = append(vals, v), append(ids, id)
				if len(vals) == 50 {
					break
				}
			}
			r.mu.Unlock()
			for i, id := range ids {
				if op, ok := r.read(300, cli, id); ok && op.State == "succeeded" {
					r.markDone(vals[i])
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return r.Pending()
}
