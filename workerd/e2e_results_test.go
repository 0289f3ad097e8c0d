package workerd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/server"
	"github.com/raftq/raftq/svcd/svcdtest"
	"github.com/raftq/raftq/worker"
	"github.com/raftq/raftq/workerd"
)

// End to end: 1,000 jobs enqueued, workerd runs them storing each outcome
// in svcd before acking; every job ends with exactly one succeeded result,
// readable over gRPC and HTTP. Run against SQLite and PostgreSQL.
func TestEveryJobHasExactlyOneResultInSvcd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// svcd verifies every result with the cluster's leader.
		c := testcluster.New(t, 3, nil)
		srv := svcdtest.StartWith(t, server.Config{DB: b.Driver, DSN: b.DSN, DataDir: b.DataDir, ReadyInterval: 50 * time.Millisecond,
			Brokers: server.BrokerCheck{Addrs: c.Addrs()}})
		rc := svcdtest.Dial(t, srv)

		cl := c.Client()
		const n = 1000
		want := map[string]string{}
		for batch := 0; batch < n/100; batch++ {
			var specs []*raftqv1.JobSpec
			for i := 0; i < 100; i++ {
				specs = append(specs, &raftqv1.JobSpec{Queue: "e2e", Type: "echo", Payload: []byte(fmt.Sprintf("job-%d-%d", batch, i))})
			}
			res, err := cl.Enqueue(ctx, specs...)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				want[r.JobId] = string(specs[i].Payload)
			}
		}

		d, err := workerd.New(workerd.Config{Brokers: c.Addrs(), Queues: []worker.QueueConfig{{Name: "e2e", Concurrency: 16}},
			Recorder: workerd.ResultsRecorder{Client: rc}, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- d.Run(wctx) }()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			qs, err := cl.QueueStats(ctx, "e2e")
			if err != nil {
				t.Fatal(err)
			}
			if len(qs) == 1 && qs[0].Succeeded == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not all jobs succeeded: %v", qs)
			}
			time.Sleep(50 * time.Millisecond)
		}
		wcancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		// Exactly one succeeded result per job, over gRPC.
		got := map[string]bool{}
		cursor := ""
		for {
			page, err := rc.ListResults(ctx, results.ListOptions{Queue: "e2e", PageSize: 1000, Cursor: cursor, IncludeOutput: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Results {
				if got[r.JobID] {
					t.Fatalf("two results for job %s", r.JobID)
				}
				got[r.JobID] = true
				if r.Status != results.StatusSucceeded || string(r.Output) != want[r.JobID] {
					t.Fatalf("result of %s: %+v", r.JobID, r)
				}
				j, err := cl.GetJob(ctx, r.JobID, 0)
				if err != nil || j.LeaseToken != r.LeaseToken {
					t.Fatalf("result token %d for job %v (%v)", r.LeaseToken, j, err)
				}
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if len(got) != n {
			t.Fatalf("%d results for %d jobs", len(got), n)
		}
		// And over HTTP.
		checked := 0
		for id, payload := range want {
			resp, err := http.Get("http://" + srv.HTTPAddr() + "/v1/results/" + id)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET result %s: %d %v", id, resp.StatusCode, err)
			}
			if fmt.Sprint(body["status"]) != "succeeded" {
				t.Fatalf("HTTP result %s: %v (payload %s)", id, body, payload)
			}
			if checked++; checked == 50 {
				break
			}
		}
	})
}

// What svcd's verification with the broker means for the worker: a job
// the broker does not know and a replaced lease are ErrLeaseLost (drop,
// never ack); a broker svcd cannot reach is any other error (the worker
// retries until its settle timeout, then nacks instead of acking), and
// nothing is stored in either case.
func TestRecorderWithVerification(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := testcluster.New(t, 1, nil)
	start := func(brokers []string) *results.Client {
		return svcdtest.Dial(t, svcdtest.StartWith(t, server.Config{DB: "sqlite", DataDir: t.TempDir(),
			Brokers: server.BrokerCheck{Addrs: brokers, Timeout: 500 * time.Millisecond}}))
	}
	rc := start(c.Addrs())
	rec := workerd.ResultsRecorder{Client: rc}
	cl := c.Client()
	id, _, err := cl.EnqueueOne(ctx, "rec", "echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"rec"}, MaxJobs: 1, MaxWait: durationpb.New(10 * time.Second)})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("fetch: %v %v", jobs, err)
	}
	o := worker.Outcome{JobID: id, Queue: "rec", Type: "echo", LeaseToken: jobs[0].GetLeaseToken(), Status: worker.StatusSucceeded, FinishedAt: time.Now()}

	unknown := o
	unknown.JobID = "no-such-job"
	if _, err := rec.Record(ctx, unknown); !errors.Is(err, worker.ErrLeaseLost) {
		t.Fatalf("unknown job: %v, want ErrLeaseLost", err)
	}
	stale := o
	stale.LeaseToken--
	if _, err := rec.Record(ctx, stale); !errors.Is(err, worker.ErrLeaseLost) {
		t.Fatalf("older token: %v, want ErrLeaseLost", err)
	}
	if _, err := rc.GetResult(ctx, id); !errors.Is(err, results.ErrNotFound) {
		t.Fatalf("refused writes stored something: %v", err)
	}

	down := workerd.ResultsRecorder{Client: start([]string{"127.0.0.1:1"})}
	short, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := down.Record(short, o); err == nil || errors.Is(err, worker.ErrLeaseLost) {
		t.Fatalf("broker unreachable: %v, want a retryable error", err)
	}
	if already, err := rec.Record(ctx, o); err != nil || already {
		t.Fatalf("the current lease's result: %v %v", already, err)
	}
}
