// Command dockertest is the host side of make docker-test: against the
// compose stack of deploy/compose.yaml (profile local) it enqueues jobs
// from the host, kills the leader's container part-way, and checks that
// every job completed exactly once — in the brokers (each job SUCCEEDED, no
// job created twice) and in svcd (one succeeded result per job, stored by
// exactly one attempt). scripts/docker-test.sh brings the stack up, runs
// it and tears the stack down.
//
// Brokers advertise their compose service names (brokerd1:7101), which the
// host cannot resolve; a resolver local to this program maps those names
// to the ports published on the host, so the unmodified client follows
// leader hints as it would inside the network.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

type config struct {
	brokers     map[string]string // node id (= compose service) → host address
	grpcPort    string            // brokers' gRPC port inside the network
	svcd        string
	killCmd     string
	queue       string
	jobs        int
	batch       int
	producers   int
	jobType     string
	payload     string
	lease       time.Duration
	readyWait   time.Duration
	completeBy  time.Duration
	killAfterOK int
	pace        time.Duration
	restartCmd  string
}

func main() {
	if err := run(); err != nil {
		logf("FAIL: %v", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("docker-test: "+format+"\n", args...)
}

func parseFlags() (*config, error) {
	c := &config{brokers: map[string]string{}}
	brokers := flag.String("brokers", "", "node-id=host-address of every broker, comma-separated (node id = compose service name)")
	flag.StringVar(&c.grpcPort, "grpc-port", "7101", "brokers' gRPC port inside the compose network")
	flag.StringVar(&c.svcd, "svcd", "", "svcd's gRPC address on the host")
	flag.StringVar(&c.killCmd, "kill-cmd", "", "command that kills a broker's container; the node id is appended")
	flag.StringVar(&c.restartCmd, "restart-cmd", "", "command that starts a killed broker's container again (node id appended); empty: leave it down")
	flag.StringVar(&c.queue, "queue", "default", "queue the workers serve")
	flag.IntVar(&c.jobs, "jobs", 1000, "jobs to enqueue")
	flag.IntVar(&c.batch, "batch", 20, "jobs per Enqueue call")
	flag.IntVar(&c.producers, "producers", 4, "concurrent Enqueue calls")
	flag.StringVar(&c.jobType, "type", "sleep", "job type (a workerd built-in)")
	flag.StringVar(&c.payload, "payload", "20ms", "job payload")
	flag.DurationVar(&c.lease, "lease", 5*time.Second, "jobs' lease duration (short: a lease lost with the leader expires soon)")
	flag.DurationVar(&c.readyWait, "ready-wait", 3*time.Minute, "give up if the stack is not ready within this")
	flag.DurationVar(&c.completeBy, "complete-wait", 5*time.Minute, "give up if the jobs have not completed within this")
	flag.DurationVar(&c.pace, "pace", 100*time.Millisecond, "gap between the batches enqueued while the leader is killed")
	flag.IntVar(&c.killAfterOK, "kill-after", 100, "kill the leader once this many jobs succeeded (and half are enqueued)")
	flag.Parse()
	for _, kv := range strings.Split(*brokers, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--brokers: %q: want id=host:port", kv)
		}
		c.brokers[id] = addr
	}
	if len(c.brokers) < 3 || c.svcd == "" || c.killCmd == "" {
		return nil, errors.New("--brokers (3 or more), --svcd and --kill-cmd are required")
	}
	return c, nil
}

// hostResolver resolves the brokers' in-network addresses (brokerd1:7101)
// to their published host ports, and anything else to itself. Registered
// per connection for the default "dns" scheme.
type hostResolver struct{ m map[string]string }

func (h hostResolver) Build(t resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	addr := t.Endpoint()
	if a, ok := h.m[addr]; ok {
		addr = a
	}
	if err := cc.UpdateState(resolver.State{Addresses: []resolver.Address{{Addr: addr}}}); err != nil {
		return nil, err
	}
	return nopResolver{}, nil
}

func (hostResolver) Scheme() string { return "dns" }

type nopResolver struct{}

func (nopResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (nopResolver) Close()                                {}

func (c *config) hostAddrs() []string {
	var out []string
	for _, a := range c.brokers {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func (c *config) idOf(hostAddr string) string {
	for id, a := range c.brokers {
		if a == hostAddr || id+":"+c.grpcPort == hostAddr {
			return id
		}
	}
	return hostAddr
}

// leader asks every broker for its status and returns the id of the one
// that says it leads, with a description of what each said.
func leader(ctx context.Context, c *config, cl *client.Client) (string, string) {
	var view []string
	lead := ""
	ids := make([]string, 0, len(c.brokers))
	for id := range c.brokers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cl.Status(cctx, c.brokers[id])
		cancel()
		if err != nil {
			view = append(view, id+"=down")
			continue
		}
		view = append(view, fmt.Sprintf("%s=%s(term %d, %d members)", id, st.GetState(), st.GetTerm(), len(st.GetMembers())))
		if st.GetState() == "Leader" {
			lead = id
		}
	}
	return lead, strings.Join(view, " ")
}

func waitReady(ctx context.Context, c *config, cl *client.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.readyWait)
	defer cancel()
	var last string
	for {
		lead, view := leader(ctx, c, cl)
		last = view
		if lead != "" && !strings.Contains(view, "down") {
			sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := cl.QueueStats(sctx, c.queue)
			scancel()
			if err == nil && svcdServing(ctx, c.svcd) == nil {
				return lead, nil
			}
			last = fmt.Sprintf("%s; broker or svcd not answering yet: %v", view, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("stack not ready within %s: %s", c.readyWait, last)
		case <-time.After(time.Second):
		}
	}
}

func svcdServing(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "raftq.v1.Results"})
	if err != nil {
		return err
	}
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("svcd %s", res.GetStatus())
	}
	return nil
}

func stats(ctx context.Context, c *config, cl *client.Client) (*raftqv1.QueueStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	qs, err := cl.QueueStats(ctx, c.queue)
	if err != nil {
		return nil, err
	}
	for _, q := range qs {
		if q.GetQueue() == c.queue {
			return q, nil
		}
	}
	return &raftqv1.QueueStats{Queue: c.queue}, nil
}

func total(q *raftqv1.QueueStats) int64 {
	return q.GetScheduled() + q.GetReady() + q.GetLeased() + q.GetSucceeded() + q.GetDead() + q.GetCancelled()
}

func run() error {
	c, err := parseFlags()
	if err != nil {
		return err
	}
	inNet := map[string]string{}
	for id, a := range c.brokers {
		inNet[id+":"+c.grpcPort] = a
	}
	cl, err := client.New(c.hostAddrs(), client.Options{
		DialOptions: []grpc.DialOption{grpc.WithResolvers(hostResolver{m: inNet})},
		CallTimeout: 20 * time.Second,
	})
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()

	lead, err := waitReady(ctx, c, cl)
	if err != nil {
		return err
	}
	_, view := leader(ctx, c, cl)
	logf("stack ready: leader %s; %s", lead, view)
	if q, err := stats(ctx, c, cl); err != nil || total(q) != 0 {
		return fmt.Errorf("queue %q is not empty at the start (%v, %v): not a fresh stack", c.queue, q, err)
	}

	// Enqueue in batches from several producers. Every job has its own
	// idempotency key, so a batch retried after an error (leader killed
	// mid-call) returns the first jobs instead of adding more.
	run := time.Now().UTC().Format("150405.000")
	ids := make([]string, c.jobs)
	var mu sync.Mutex
	var dups, retries int
	var enqueued atomic.Int64
	enqueue := func(from, to int) error {
		var specs []*raftqv1.JobSpec
		for i := from; i < to; i++ {
			specs = append(specs, &raftqv1.JobSpec{
				Queue:          c.queue,
				Type:           c.jobType,
				Payload:        []byte(c.payload),
				IdempotencyKey: fmt.Sprintf("docker-test-%s-%04d", run, i),
				LeaseDuration:  durationpb.New(c.lease),
				MaxAttempts:    100,
			})
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			res, err := cl.Enqueue(cctx, specs...)
			cancel()
			if err == nil {
				mu.Lock()
				for k, r := range res {
					ids[from+k] = r.GetJobId()
					if r.GetDuplicate() {
						dups++
					}
				}
				mu.Unlock()
				enqueued.Add(int64(len(res)))
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("enqueue jobs %d..%d: %w", from, to-1, err)
			}
			mu.Lock()
			retries++
			mu.Unlock()
			logf("enqueue jobs %d..%d: %v (indeterminate=%v); retrying with the same keys", from, to-1, err, client.IsIndeterminate(err))
			time.Sleep(500 * time.Millisecond)
		}
	}
	// enqueueRange enqueues jobs [from, to), handing out one batch every
	// pace (0: as fast as the producers go).
	enqueueRange := func(from, to int, pace time.Duration) error {
		next := make(chan int)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var once sync.Once
		var firstErr error
		for p := 0; p < c.producers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if err := enqueue(i, min(i+c.batch, to)); err != nil {
						once.Do(func() { firstErr = err; close(stop) })
					}
				}
			}()
		}
	feed:
		for i := from; i < to; i += c.batch {
			if pace > 0 && i > from {
				time.Sleep(pace)
			}
			select {
			case next <- i:
			case <-stop:
				break feed
			}
		}
		close(next)
		wg.Wait()
		return firstErr
	}

	half := (c.jobs / 2 / c.batch) * c.batch
	start := time.Now()
	if err := enqueueRange(0, half, 0); err != nil {
		return err
	}
	logf("enqueued %d jobs (queue %q, type %s %q) in %s", half, c.queue, c.jobType, c.payload, time.Since(start).Round(time.Millisecond))

	// Kill the leader while workers hold leases and jobs are still coming.
	for {
		q, err := stats(ctx, c, cl)
		if err != nil {
			return fmt.Errorf("queue stats: %w", err)
		}
		if q.GetSucceeded() >= int64(min(c.killAfterOK, half)) {
			logf("before the kill: %s", fmtStats(q))
			break
		}
		if time.Since(start) > c.completeBy {
			return fmt.Errorf("no progress: %s (is workerd running?)", fmtStats(q))
		}
		time.Sleep(100 * time.Millisecond)
	}
	victim, view := leader(ctx, c, cl)
	if victim == "" {
		return fmt.Errorf("no leader to kill: %s", view)
	}
	args := append(strings.Fields(c.killCmd), victim)
	// The second half is enqueued while the kill happens, paced so that
	// calls are in flight when the leader dies; they must carry on.
	logf("killing the leader's container while enqueuing the rest: %s", strings.Join(args, " "))
	killed := make(chan error, 1)
	go func() {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("kill %s: %v: %s", victim, err, out)
		} else {
			logf("%s killed; %d of %d jobs enqueued so far", victim, enqueued.Load(), c.jobs)
		}
		killed <- err
	}()
	killedAt := time.Now()
	if err := enqueueRange(half, c.jobs, c.pace); err != nil {
		return err
	}
	if err := <-killed; err != nil {
		return err
	}
	logf("enqueued all %d jobs (%d enqueue retries, %d answered as duplicates of a first try)", c.jobs, retries, dups)
	newLead, view := leader(ctx, c, cl)
	logf("after the kill: leader %s; %s", newLead, view)
	if newLead == victim {
		return fmt.Errorf("killed %s still leads: %s", victim, view)
	}

	seen := map[string]int{}
	for i, id := range ids {
		if id == "" {
			return fmt.Errorf("job %d has no id", i)
		}
		if j, ok := seen[id]; ok {
			return fmt.Errorf("jobs %d and %d got the same id %s", j, i, id)
		}
		seen[id] = i
	}

	// Wait for completion, then check each job and the totals.
	var q *raftqv1.QueueStats
	lastLog := time.Time{}
	for {
		if q, err = stats(ctx, c, cl); err == nil {
			if q.GetSucceeded() >= int64(c.jobs) && q.GetScheduled()+q.GetReady()+q.GetLeased() == 0 {
				break
			}
			if time.Since(lastLog) > 5*time.Second {
				logf("waiting: %s", fmtStats(q))
				lastLog = time.Now()
			}
		}
		if time.Since(start) > c.completeBy {
			return fmt.Errorf("jobs not complete within %s: %s (last error %v)", c.completeBy, fmtStats(q), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	logf("all jobs terminal %s after the kill: %s", time.Since(killedAt).Round(100*time.Millisecond), fmtStats(q))
	if total(q) != int64(c.jobs) || q.GetSucceeded() != int64(c.jobs) {
		return fmt.Errorf("queue holds %d jobs, %d succeeded; want exactly %d, all succeeded", total(q), q.GetSucceeded(), c.jobs)
	}
	rerun := 0
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		j, err := cl.GetJob(cctx, id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
		cancel()
		if err != nil {
			return fmt.Errorf("get job %s: %w", id, err)
		}
		if j.GetState() != raftqv1.JobState_JOB_STATE_SUCCEEDED {
			return fmt.Errorf("job %s is %s, want SUCCEEDED", id, j.GetState())
		}
		if j.GetAttempts() > 1 {
			rerun++
		}
	}
	logf("brokers: exactly %d jobs (none created twice), each SUCCEEDED (%d needed more than one lease)", c.jobs, rerun)

	if err := checkSvcd(ctx, c, seen); err != nil {
		return err
	}
	if c.restartCmd != "" {
		if err := restartAndConverge(ctx, c, cl, victim); err != nil {
			return err
		}
	}
	_, view = leader(ctx, c, cl)
	logf("final cluster view: %s", view)
	logf("PASS: %d jobs enqueued from the host, leader %s killed mid-run, every job completed exactly once", c.jobs, victim)
	return nil
}

// restartAndConverge starts the killed broker again from its volume and
// waits until all brokers answer, one leads, and every FSM state hash is
// the same (the restarted node caught up with what it missed).
func restartAndConverge(ctx context.Context, c *config, cl *client.Client, victim string) error {
	args := append(strings.Fields(c.restartCmd), victim)
	logf("restarting %s: %s", victim, strings.Join(args, " "))
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("restart %s: %v: %s", victim, err, out)
	}
	deadline := time.Now().Add(c.readyWait)
	var last string
	for time.Now().Before(deadline) {
		hashes := map[string]bool{}
		leaders, up := 0, 0
		var view []string
		for id, addr := range c.brokers {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := cl.StatusWithHash(cctx, addr)
			cancel()
			if err != nil {
				view = append(view, id+"=down")
				continue
			}
			up++
			if st.GetState() == "Leader" {
				leaders++
			}
			hashes[st.GetStateHash()] = true
			view = append(view, fmt.Sprintf("%s=%s@%d", id, st.GetState(), st.GetAppliedIndex()))
		}
		sort.Strings(view)
		last = strings.Join(view, " ")
		if up == len(c.brokers) && leaders == 1 && len(hashes) == 1 {
			logf("%s rejoined from its volume; all %d brokers hold the same state: %s", victim, up, last)
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("%s restarted but the brokers did not converge within %s: %s", victim, c.readyWait, last)
}

func fmtStats(q *raftqv1.QueueStats) string {
	if q == nil {
		return "no stats"
	}
	return fmt.Sprintf("scheduled=%d ready=%d leased=%d succeeded=%d dead=%d cancelled=%d",
		q.GetScheduled(), q.GetReady(), q.GetLeased(), q.GetSucceeded(), q.GetDead(), q.GetCancelled())
}

// checkSvcd checks the system of record: exactly one succeeded result per
// job, each stored by exactly one attempt (others, if a job ran twice, are
// duplicates or already-succeeded), and no result for any other job.
func checkSvcd(ctx context.Context, c *config, jobs map[string]int) error {
	cc, err := grpc.NewClient(c.svcd, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	rc := raftqv1.NewResultsClient(cc)
	results := map[string]*raftqv1.JobResult{}
	cursor := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := rc.ListResults(cctx, &raftqv1.ListResultsRequest{Queue: c.queue, PageSize: 1000, Cursor: cursor})
		cancel()
		if err != nil {
			return fmt.Errorf("svcd ListResults: %w", err)
		}
		for _, r := range res.GetResults() {
			if _, dup := results[r.GetJobId()]; dup {
				return fmt.Errorf("svcd lists job %s twice", r.GetJobId())
			}
			results[r.GetJobId()] = r
		}
		if cursor = res.GetNextCursor(); cursor == "" {
			break
		}
	}
	if len(results) != len(jobs) {
		return fmt.Errorf("svcd holds %d results for queue %q, want %d", len(results), c.queue, len(jobs))
	}
	multi := 0
	for id := range jobs {
		r, ok := results[id]
		if !ok {
			return fmt.Errorf("svcd has no result for job %s", id)
		}
		if r.GetStatus() != raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED {
			return fmt.Errorf("svcd: job %s is %s", id, r.GetStatus())
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		at, err := rc.ListAttempts(cctx, &raftqv1.ListAttemptsRequest{JobId: id})
		cancel()
		if err != nil {
			return fmt.Errorf("svcd ListAttempts %s: %w", id, err)
		}
		stored := 0
		for _, a := range at.GetAttempts() {
			if a.GetOutcome() == raftqv1.StoreOutcome_STORE_OUTCOME_STORED && a.GetStatus() == raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED {
				stored++
			}
		}
		if stored != 1 {
			return fmt.Errorf("svcd: job %s has %d stored successes, want exactly 1 (%v)", id, stored, at.GetAttempts())
		}
		if len(at.GetAttempts()) > 1 {
			multi++
		}
	}
	logf("svcd: %d results, one SUCCEEDED result per job, each stored exactly once (%d jobs ran more than once)", len(results), multi)
	return nil
}
