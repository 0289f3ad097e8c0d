package workload

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/jepsen/checker"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The workflow workload: a submitter enqueues small workflows (a diamond
// a→{b,c}→d, a chain of three, a batch with on-success and on-complete
// callbacks) atomically, and workers lease their jobs, failing some of
// them (a permanent nack: the job is dead, its cancel-policy dependants
// are cancelled). Every lease (with the parents the broker handed out)
// and every ack or nack sent is recorded; at the end every job of the
// queue is read back for checker.Workflow.
const (
	WorkflowQueue = "jepsen-wf"
	// workflowEvery paces submissions: a few hundred jobs per run.
	workflowEvery = 300 * time.Millisecond
	// workflowFail is the share of leased jobs the workers fail.
	workflowFail = 0.15
	// workflowWorkers lease in parallel, so siblings overlap.
	workflowWorkers = 3
)

// Workflows runs the workflow workload; StartWorkflows starts it.
type Workflows struct {
	cl     *client.Client
	rng    *rand.Rand
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	state checker.WorkflowState
}

// StartWorkflows starts the submitter and the workers.
func StartWorkflows(addrs []string, seed int64) (*Workflows, error) {
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Workflows{cl: cl, rng: rand.New(rand.NewSource(seed)), cancel: cancel,
		state: checker.WorkflowState{Queue: WorkflowQueue}}
	w.wg.Add(1 + workflowWorkers)
	go w.submit(ctx)
	for i := 0; i < workflowWorkers; i++ {
		go w.work(ctx, fmt.Sprintf("wf-%d", i), seed+int64(i)+1)
	}
	return w, nil
}

// shape returns one workflow's specs, linked by name.
func (w *Workflows) shape(n int) []*raftqv1.JobSpec {
	job := func(name string, opts ...client.JobOption) *raftqv1.JobSpec {
		return client.NewJob(WorkflowQueue, name, nil, append([]client.JobOption{
			client.WithName(fmt.Sprintf("%s-%d", name, n)), client.WithMaxAttempts(1),
			client.WithLeaseDuration(5 * time.Second)}, opts...)...)
	}
	name := func(s string) string { return fmt.Sprintf("%s-%d", s, n) }
	switch w.rng.Intn(3) {
	case 0:
		return []*raftqv1.JobSpec{
			job("d", client.DependsOnNames(name("b"), name("c"))),
			job("b", client.DependsOnNames(name("a"))),
			job("c", client.DependsOnNames(name("a"))),
			job("a"),
		}
	case 1:
		return client.Chain(job("s1"), job("s2"), job("s3"))
	default:
		return (&client.Batch{Name: name("batch"),
			Jobs:       []*raftqv1.JobSpec{job("p1"), job("p2"), job("p3")},
			OnSuccess:  []*raftqv1.JobSpec{job("ok")},
			OnComplete: []*raftqv1.JobSpec{job("done")},
		}).Specs()
	}
}

func (w *Workflows) submit(ctx context.Context) {
	defer w.wg.Done()
	for n := 0; ctx.Err() == nil; n++ {
		w.mu.Lock()
		specs := w.shape(n)
		w.mu.Unlock()
		// The client's idempotency keys make a retry of the same specs
		// return the first submission: retry a few times through faults.
		for try := 0; try < 5 && ctx.Err() == nil; try++ {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			res, err := w.cl.Enqueue(cctx, specs...)
			cancel()
			if err == nil && len(res) == len(specs) {
				w.declare(specs, res)
				break
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
		sleepCtx(ctx, workflowEvery)
	}
}

// declare records a submitted workflow: each job's id and the parents
// and policy it was submitted with (names resolved to the ids returned).
func (w *Workflows) declare(specs []*raftqv1.JobSpec, res []*raftqv1.EnqueueResult) {
	ids := map[string]string{}
	for i, s := range specs {
		if s.Name != "" {
			ids[s.Name] = res[i].JobId
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state.Submitted++
	for i, s := range specs {
		parents := append([]string(nil), s.DependsOn...)
		for _, n := range s.DependsOnNames {
			parents = append(parents, ids[n])
		}
		w.state.Declared = append(w.state.Declared, checker.WorkflowJob{ID: res[i].JobId, Parents: parents,
			RunAnyway: s.DependencyPolicy == raftqv1.DependencyPolicy_DEPENDENCY_POLICY_RUN_ANYWAY})
	}
}

func (w *Workflows) work(ctx context.Context, id string, seed int64) {
	defer w.wg.Done()
	rng := rand.New(rand.NewSource(seed))
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		jobs, err := w.cl.Fetch(fctx, &raftqv1.FetchRequest{Queues: []string{WorkflowQueue}, MaxJobs: 2,
			MaxWait: durationpb.New(time.Second), WorkerId: id})
		cancel()
		at := time.Now().UnixNano()
		if err != nil {
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		for _, j := range jobs {
			w.mu.Lock()
			w.state.Leases = append(w.state.Leases, checker.WorkflowLease{ID: j.Id, At: at, Parents: j.Parents,
				RunAnyway: j.DependencyPolicy == raftqv1.DependencyPolicy_DEPENDENCY_POLICY_RUN_ANYWAY})
			w.mu.Unlock()
		}
		for _, j := range jobs {
			ack := rng.Float64() >= workflowFail
			w.mu.Lock()
			w.state.Settles = append(w.state.Settles, checker.WorkflowSettle{ID: j.Id, At: time.Now().UnixNano(), Ack: ack})
			w.mu.Unlock()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if ack {
				_ = w.cl.Ack(sctx, j.Id, j.LeaseToken)
			} else {
				_, _ = w.cl.Nack(sctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken, Error: "jepsen: failed on purpose", Permanent: true})
			}
			cancel()
		}
	}
}

// Stop stops the submitter and the workers (the jobs stay as they are).
func (w *Workflows) Stop() {
	w.cancel()
	w.wg.Wait()
}

// Read reads back every job of the queue from the leader (retrying until
// timeout) and returns the recorded state; a failure is in its Err.
func (w *Workflows) Read(timeout time.Duration) *checker.WorkflowState {
	defer w.cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	w.mu.Lock()
	st := w.state
	w.mu.Unlock()
	// Let the workers' last leases run out first, so that nothing moves
	// while the states are listed one after another (at most half the
	// time allowed; the read follows either way).
	quiet, quietCancel := context.WithTimeout(ctx, timeout/2)
	for quiet.Err() == nil {
		qs, err := w.cl.QueueStats(quiet, WorkflowQueue)
		if err == nil && len(qs) == 1 && qs[0].Leased == 0 {
			break
		}
		sleepCtx(quiet, 500*time.Millisecond)
	}
	quietCancel()
	var lastErr error
	for ctx.Err() == nil {
		if st.Final, lastErr = readWorkflowJobs(ctx, w.cl); lastErr == nil {
			return &st
		}
		time.Sleep(200 * time.Millisecond)
	}
	st.Err = fmt.Sprint(lastErr)
	return &st
}

func readWorkflowJobs(ctx context.Context, cl *client.Client) ([]checker.WorkflowJob, error) {
	var out []checker.WorkflowJob
	for state := raftqv1.JobState_JOB_STATE_SCHEDULED; state <= raftqv1.JobState_JOB_STATE_WAITING; state++ {
		after := ""
		for {
			page, err := cl.ListJobs(ctx, &raftqv1.ListJobsRequest{Queue: WorkflowQueue, State: state, After: after, Limit: 1000})
			if err != nil {
				return nil, err
			}
			for _, j := range page.Jobs {
				out = append(out, checker.WorkflowJob{ID: j.Id, State: fsm.State(j.State).String(), Attempts: j.Attempts,
					Parents:   j.Parents,
					RunAnyway: j.DependencyPolicy == raftqv1.DependencyPolicy_DEPENDENCY_POLICY_RUN_ANYWAY})
			}
			if page.NextAfter == "" {
				break
			}
			after = page.NextAfter
		}
	}
	return out, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
