package workerd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/testcluster"
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
		srv, err := server.New(ctx, server.Config{ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0",
			DB: b.Driver, DSN: b.DSN, DataDir: b.DataDir, ReadyInterval: 50 * time.Millisecond,
			Brokers: server.BrokerCheck{Addrs: c.Addrs()}})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		defer func() {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
		}()
		rc, err := results.Dial(srv.GRPCAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()

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
			Recorder: workerd.ResultsRecorder{Client: rc}, Logger: testcluster.Logger()})
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
