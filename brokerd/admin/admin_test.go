package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// errCode is the error shape's code ("" when the body is not an error).
func (r reply) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, r.raw) }

func call(t *testing.T, method, url, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, url, raw, err)
		}
		if r.status >= 400 {
			// The one error shape: code, message and request id always.
			e, ok := r.body["error"].(map[string]any)
			if !ok || e["code"] == "" || e["message"] == "" || e["request_id"] == "" || e["request_id"] != resp.Header.Get("X-Request-Id") {
				t.Fatalf("%s %s: error not in the error shape: %s", method, url, raw)
			}
		}
	}
	return r
}

func want(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.errCode() != code {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
}

func follower(c *testcluster.Cluster) *brokerd.Node {
	for _, n := range c.Up() {
		if !n.IsLeaderReady() {
			return n
		}
	}
	return nil
}

// base is node n's admin API URL.
func base(c *testcluster.Cluster, n *brokerd.Node) string { return "http://" + c.AdminAddr(n) }

// deadJobs enqueues n jobs with one attempt each and fails them, returning
// their ids.
func deadJobs(t *testing.T, cl *client.Client, queue string, n int) []string {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	var specs []*raftqv1.JobSpec
	for i := 0; i < n; i++ {
		specs = append(specs, &raftqv1.JobSpec{Queue: queue, Type: "t", MaxAttempts: 1, Payload: []byte(fmt.Sprintf("job %d", i))})
	}
	if _, err := cl.Enqueue(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for len(ids) < n {
		jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{queue}, MaxJobs: int32(n), MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken, Error: "boom: " + string(j.Payload)}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, j.Id)
		}
	}
	return ids
}

func jobState(t *testing.T, cl *client.Client, id string) raftqv1.JobState {
	t.Helper()
	j, err := cl.GetJob(testutil.Context(t, 10*time.Second), id, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return j.State
}

// TestAdminAPI drives each endpoint of one 3-node cluster's admin API,
// through a follower wherever the call is a write (it must be forwarded),
// including the refusals.
func TestAdminAPI(t *testing.T) {
	c := testcluster.New(t, 3, nil, testcluster.Admin)
	cl := c.Client()
	ctx := testutil.Context(t, 2*time.Minute)
	l := c.WaitLeader(10 * time.Second)
	f := follower(c)
	fb := base(c, f)

	t.Run("health", func(t *testing.T) {
		for _, n := range c.Up() {
			want(t, call(t, "GET", base(c, n)+"/healthz", ""), 200, "")
			r := call(t, "GET", base(c, n)+"/readyz", "")
			want(t, r, 200, "")
			if r.body["node_id"] != n.ID() {
				t.Fatalf("readyz %s", r)
			}
		}
	})

	t.Run("request ids", func(t *testing.T) {
		r := call(t, "GET", fb+"/v1/jobs/nope", "", "X-Request-Id", "op-42")
		want(t, r, 404, "NOT_FOUND")
		if r.header.Get("X-Request-Id") != "op-42" || r.body["error"].(map[string]any)["request_id"] != "op-42" {
			t.Fatalf("request id not echoed: %s %v", r, r.header)
		}
		r = call(t, "GET", fb+"/healthz", "")
		if len(r.header.Get("X-Request-Id")) < 16 {
			t.Fatalf("no generated request id: %v", r.header)
		}
	})

	t.Run("routing refusals", func(t *testing.T) {
		want(t, call(t, "GET", fb+"/v1/nothing", ""), 404, "NOT_FOUND")
		want(t, call(t, "PUT", fb+"/v1/queues/q/pause", ""), 405, "METHOD_NOT_ALLOWED")
	})

	t.Run("cluster", func(t *testing.T) {
		r := call(t, "GET", fb+"/v1/cluster", "")
		want(t, r, 200, "")
		if r.body["leader_id"] != l.ID() || r.body["node_id"] != f.ID() || len(r.body["members"].([]any)) != 3 {
			t.Fatalf("cluster %s", r)
		}
		if r.body["raft"].(map[string]any)["state"] != "Follower" || r.body["commit_index"].(float64) == 0 {
			t.Fatalf("raft view %s", r)
		}
	})

	t.Run("queues", func(t *testing.T) {
		if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "qa", Type: "t"}, &raftqv1.JobSpec{Queue: "qa", Type: "t"}); err != nil {
			t.Fatal(err)
		}
		r := call(t, "GET", fb+"/v1/queues", "")
		want(t, r, 200, "")
		var found bool
		for _, q := range r.body["queues"].([]any) {
			q := q.(map[string]any)
			if q["name"] == "qa" {
				found = true
				if q["counts"].(map[string]any)["ready"] != 2.0 || q["oldest_ready_age_seconds"].(float64) < 0 {
					t.Fatalf("queue %v", q)
				}
				if _, ok := q["rates"].(map[string]any)["enqueued_per_second"]; !ok {
					t.Fatalf("no rates: %v", q)
				}
			}
		}
		if !found {
			t.Fatalf("queue qa missing: %s", r)
		}
		r = call(t, "GET", fb+"/v1/queues/qa?consistency=stale", "")
		want(t, r, 200, "")
		want(t, call(t, "GET", fb+"/v1/queues/qa?consistency=maybe", ""), 400, "INVALID_ARGUMENT")
		want(t, call(t, "GET", fb+"/v1/queues/"+strings.Repeat("x", 300), ""), 400, "INVALID_ARGUMENT")

		r = call(t, "GET", fb+"/v1/queues/qa/jobs?state=ready&limit=1", "")
		want(t, r, 200, "")
		if len(r.body["jobs"].([]any)) != 1 || r.body["next_after"] == "" {
			t.Fatalf("page %s", r)
		}
		want(t, call(t, "GET", fb+"/v1/queues/qa/jobs", ""), 400, "INVALID_ARGUMENT")
		want(t, call(t, "GET", fb+"/v1/queues/qa/jobs?state=ready&limit=0", ""), 400, "INVALID_ARGUMENT")
	})

	t.Run("pause and resume on a follower are forwarded", func(t *testing.T) {
		want(t, call(t, "POST", fb+"/v1/queues/qp/pause", `{"until": "tomorrow"}`), 400, "INVALID_ARGUMENT")
		if c.WaitLeader(10 * time.Second).FSM().Stats([]string{"qp"})[0].Paused {
			t.Fatal("refused pause paused the queue")
		}
		want(t, call(t, "POST", fb+"/v1/queues/qp/pause", ""), 200, "")
		st := c.WaitLeader(10 * time.Second).FSM().Stats([]string{"qp"})
		if !st[0].Paused {
			t.Fatal("queue not paused on the leader")
		}
		r := call(t, "GET", fb+"/v1/queues/qp", "")
		if r.body["paused"] != true {
			t.Fatalf("queue %s", r)
		}
		want(t, call(t, "POST", fb+"/v1/queues/qp/resume", ""), 200, "")
		if c.WaitLeader(10 * time.Second).FSM().Stats([]string{"qp"})[0].Paused {
			t.Fatal("queue still paused")
		}
	})

	t.Run("jobs", func(t *testing.T) {
		res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "qj", Type: "t", Payload: []byte("hello")})
		if err != nil {
			t.Fatal(err)
		}
		id := res[0].JobId
		r := call(t, "GET", fb+"/v1/jobs/"+id, "")
		want(t, r, 200, "")
		if r.body["state"] != "ready" || r.body["payload"] != "aGVsbG8=" || r.body["queue"] != "qj" {
			t.Fatalf("job %s", r)
		}
		want(t, call(t, "GET", fb+"/v1/jobs/0190d3c0-0000-7000-8000-000000000000", ""), 404, "NOT_FOUND")
		want(t, call(t, "POST", fb+"/v1/jobs/0190d3c0-0000-7000-8000-000000000000/cancel", ""), 404, "NOT_FOUND")
		r = call(t, "POST", fb+"/v1/jobs/"+id+"/cancel", "")
		want(t, r, 200, "")
		if r.body["state"] != "cancelled" || jobState(t, cl, id) != raftqv1.JobState_JOB_STATE_CANCELLED {
			t.Fatalf("cancel %s", r)
		}
		// A repeated cancel finds its effect and succeeds (G6: safe to retry).
		r = call(t, "POST", fb+"/v1/jobs/"+id+"/cancel", "")
		want(t, r, 200, "")
		if r.body["state"] != "cancelled" {
			t.Fatalf("repeated cancel %s", r)
		}
		// No svcd configured: attempts are unavailable, clearly.
		want(t, call(t, "GET", fb+"/v1/jobs/"+id+"/attempts", ""), 501, "NOT_CONFIGURED")
	})

	t.Run("dead letters", func(t *testing.T) {
		ids := deadJobs(t, cl, "qd", 4)
		r := call(t, "GET", fb+"/v1/queues/qd/dead", "")
		want(t, r, 200, "")
		if len(r.body["jobs"].([]any)) != 4 {
			t.Fatalf("dead list %s", r)
		}
		r = call(t, "GET", fb+"/v1/queues/qd/dead/"+ids[0], "")
		want(t, r, 200, "")
		if r.body["state"] != "dead" || !strings.HasPrefix(r.body["last_error"].(string), "boom") {
			t.Fatalf("inspect %s", r)
		}
		want(t, call(t, "GET", fb+"/v1/queues/other/dead/"+ids[0], ""), 404, "NOT_FOUND")

		// Bad bodies change nothing.
		want(t, call(t, "POST", fb+"/v1/queues/qd/dead/redrive", `{"job_ids": [`), 400, "INVALID_ARGUMENT")
		want(t, call(t, "POST", fb+"/v1/queues/qd/dead/redrive", `{"jobs": []}`), 400, "INVALID_ARGUMENT")
		want(t, call(t, "POST", fb+"/v1/queues/qd/dead/redrive", `{} {}`), 400, "INVALID_ARGUMENT")
		big := `{"job_ids": ["` + strings.Repeat("a", 2<<20) + `"]}`
		want(t, call(t, "POST", fb+"/v1/queues/qd/dead/redrive", big), 413, "TOO_LARGE")
		want(t, call(t, "POST", fb+"/v1/queues/qd/dead/purge", `{}`), 400, "INVALID_ARGUMENT")
		want(t, call(t, "POST", fb+"/v1/queues/qd/dead/purge", `{"all": true, "job_ids": ["`+ids[0]+`"]}`), 400, "INVALID_ARGUMENT")
		for _, id := range ids {
			if s := jobState(t, cl, id); s != raftqv1.JobState_JOB_STATE_DEAD {
				t.Fatalf("%s is %v after refused calls", id, s)
			}
		}

		// Redrive one through the follower.
		r = call(t, "POST", fb+"/v1/queues/qd/dead/redrive", `{"job_ids": ["`+ids[0]+`"]}`)
		want(t, r, 200, "")
		if got := r.body["job_ids"].([]any); len(got) != 1 || got[0] != ids[0] {
			t.Fatalf("redrive %s", r)
		}
		if s := jobState(t, cl, ids[0]); s != raftqv1.JobState_JOB_STATE_READY {
			t.Fatalf("redriven job is %v", s)
		}
		// A repeated redrive finds the job as the first left it: success.
		r = call(t, "POST", fb+"/v1/queues/qd/dead/redrive", `{"job_ids": ["`+ids[0]+`"]}`)
		want(t, r, 200, "")
		if got := r.body["job_ids"].([]any); len(got) != 1 || got[0] != ids[0] {
			t.Fatalf("repeated redrive %s", r)
		}

		// Purge one by id, then the rest.
		r = call(t, "POST", fb+"/v1/queues/qd/dead/purge", `{"job_ids": ["`+ids[1]+`"]}`)
		want(t, r, 200, "")
		want(t, call(t, "GET", fb+"/v1/jobs/"+ids[1], ""), 404, "NOT_FOUND")
		want(t, call(t, "POST", fb+"/v1/queues/qd/dead/purge", `{"job_ids": ["`+ids[0]+`"]}`), 409, "WRONG_STATE")
		r = call(t, "POST", fb+"/v1/queues/qd/dead/purge", `{"all": true}`)
		want(t, r, 200, "")
		if len(r.body["job_ids"].([]any)) != 2 {
			t.Fatalf("purge all %s", r)
		}
		r = call(t, "GET", fb+"/v1/queues/qd", "")
		if cnt := r.body["counts"].(map[string]any); cnt["dead"] != 0.0 || cnt["ready"] != 1.0 {
			t.Fatalf("after purge %s", r)
		}
		c.WaitConverged(10 * time.Second)
	})

	t.Run("backup and restore", func(t *testing.T) {
		res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "qb", Type: "t", Payload: []byte("before")})
		if err != nil {
			t.Fatal(err)
		}
		before := res[0].JobId
		r := call(t, "GET", base(c, c.WaitLeader(10*time.Second))+"/v1/cluster/snapshot", "")
		if r.status != 200 || len(r.raw) == 0 || r.header.Get("X-Raftq-Applied-Index") == "" {
			t.Fatalf("snapshot: %d %v", r.status, r.header)
		}
		backup := r.raw
		res, err = cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "qb", Type: "t", Payload: []byte("after")})
		if err != nil {
			t.Fatal(err)
		}
		after := res[0].JobId

		want(t, call(t, "POST", fb+"/v1/cluster/restore", string(backup)), 400, "INVALID_ARGUMENT") // no confirm
		want(t, call(t, "POST", fb+"/v1/cluster/restore?confirm=replace-all-state", "garbage"), 400, "INVALID_ARGUMENT")
		if s := jobState(t, cl, after); s != raftqv1.JobState_JOB_STATE_READY {
			t.Fatalf("refused restore changed state: %v", s)
		}
		r = call(t, "POST", fb+"/v1/cluster/restore?confirm=replace-all-state", string(backup))
		want(t, r, 200, "")
		if jobState(t, cl, before) != raftqv1.JobState_JOB_STATE_READY {
			t.Fatal("job from before the backup lost")
		}
		if _, err := cl.GetJob(ctx, after, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); client.Reason(err) != raftqv1.ErrorDetail_NOT_FOUND {
			t.Fatalf("job from after the backup: %v", err)
		}
		c.WaitConverged(30 * time.Second)
		// The cluster goes on: a new job is leased with a token above the
		// restore point.
		jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"qb"}, MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"})
		if err != nil || len(jobs) != 1 || jobs[0].LeaseToken <= uint64(r.body["index"].(float64)) {
			t.Fatalf("fetch after restore: %v %v (restore %s)", jobs, err, r)
		}
	})

	t.Run("membership", func(t *testing.T) {
		want(t, call(t, "POST", fb+"/v1/cluster/members", `{"node_id": "n9"}`), 400, "INVALID_ARGUMENT")
		want(t, call(t, "DELETE", fb+"/v1/cluster/members/n9", ""), 404, "NOT_FOUND")
		// A fresh node that neither bootstraps nor joins, added by an
		// operator through a follower's admin API.
		cfg := brokerd.DefaultConfig()
		cfg.NodeID, cfg.DataDir = "n9", t.TempDir()
		cfg.RaftAddr, cfg.GRPCAddr = freeport.T(t), freeport.T(t)
		cfg.Logger = testutil.Logger(t)
		n9, err := brokerd.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n9.Kill()
		body := fmt.Sprintf(`{"node_id": "n9", "raft_addr": %q, "grpc_addr": %q}`, n9.RaftAddr(), n9.GRPCAddr())
		want(t, call(t, "POST", fb+"/v1/cluster/members", body), 200, "")
		for n9.Ready() != nil {
			if ctx.Err() != nil {
				t.Fatal("added node never saw a leader")
			}
			time.Sleep(20 * time.Millisecond)
		}
		r := call(t, "GET", fb+"/v1/cluster", "")
		if len(r.body["members"].([]any)) != 4 {
			t.Fatalf("after add: %s", r)
		}
		want(t, call(t, "DELETE", fb+"/v1/cluster/members/n9", ""), 200, "")
		// The follower learns the new configuration on its next heartbeat.
		for {
			r = call(t, "GET", fb+"/v1/cluster", "")
			if len(r.body["members"].([]any)) == 3 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("after remove: %s", r)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("transfer leadership", func(t *testing.T) {
		old := c.WaitLeader(10 * time.Second)
		var target, via *brokerd.Node
		for _, n := range c.Up() {
			if n != old && target == nil {
				target = n
			} else if n != old {
				via = n
			}
		}
		want(t, call(t, "POST", base(c, via)+"/v1/cluster/transfer-leadership", `{"node_id": "nope"}`), 404, "NOT_FOUND")
		want(t, call(t, "POST", base(c, via)+"/v1/cluster/transfer-leadership", `{"node_id": "`+old.ID()+`"}`), 409, "WRONG_STATE")
		r := call(t, "POST", base(c, via)+"/v1/cluster/transfer-leadership", `{"node_id": "`+target.ID()+`"}`)
		want(t, r, 200, "")
		if r.body["leader_id"] != target.ID() {
			t.Fatalf("transfer: %s, want %s", r, target.ID())
		}
		if l := c.WaitLeader(10 * time.Second); l.ID() != target.ID() {
			t.Fatalf("leader is %s", l.ID())
		}
	})
}

// TestAdminRemoveLastMemberRefused: a cluster of one refuses to remove its
// only voter (and to hand leadership to nobody), and stays up.
func TestAdminRemoveLastMemberRefused(t *testing.T) {
	c := testcluster.New(t, 1, nil, testcluster.Admin)
	n := c.WaitLeader(10 * time.Second)
	want(t, call(t, "DELETE", base(c, n)+"/v1/cluster/members/"+n.ID(), ""), 409, "WRONG_STATE")
	want(t, call(t, "POST", base(c, n)+"/v1/cluster/transfer-leadership", ""), 409, "WRONG_STATE")
	want(t, call(t, "GET", base(c, n)+"/readyz", ""), 200, "")
	if !n.IsLeaderReady() {
		t.Fatal("node stopped leading")
	}
}

func containsLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if l == line {
			return true
		}
	}
	return false
}
