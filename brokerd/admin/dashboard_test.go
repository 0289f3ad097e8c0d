package admin_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/server"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// chromiumPath finds Debian's chromium (scripts/chromium-install.sh), or
// skips the test with the reason, except under CI=true where a missing
// browser fails it: CI must not go green without running it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if abs, err := exec.LookPath(p); err == nil {
			return abs
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not installed: run scripts/chromium-install.sh")
	}
	t.Skip("skipping: chromium not installed (scripts/chromium-install.sh installs Debian's chromium)")
	return ""
}

// saveArtifact keeps a screenshot: in t.ArtifactDir() (kept with
// `go test -artifacts -outputdir DIR`), and copied to
// $RAFTQ_TEST_ARTIFACTS/<test> or, without it,
// $TMPDIR/raftq-test-artifacts/<test>, which outlives the test; the path
// is logged.
func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	root := os.Getenv("RAFTQ_TEST_ARTIFACTS")
	if root == "" {
		root = filepath.Join(os.TempDir(), "raftq-test-artifacts")
	}
	dir := filepath.Join(root, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot saved: %s", p)
}

// fixture is a 3-node cluster with every admin server on and svcd
// attached, holding jobs in every interesting shape.
type fixture struct {
	c    *testcluster.Cluster
	cl   *client.Client
	ui   string // a follower's dashboard, http://…/ui
	dead []string
	// In "reports": ready jobs of two types, one with a binary payload,
	// and one succeeded whose result svcd holds.
	pdf, csv, binary, done string
}

// staticQueues are fixed live queue settings (brokerd.QueueSettings).
type staticQueues map[string]dispatch.QueueLimit

func (q staticQueues) QueueDefaults(_ string, configured brokerd.Defaults) brokerd.Defaults {
	return configured
}
func (q staticQueues) QueueLimit(name string) dispatch.QueueLimit { return q[name] }
func (q staticQueues) Changed() <-chan struct{}                   { return nil }

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b := svcdtest.SQLite(t)
	svcd, err := server.New(context.Background(), server.Config{ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: b.Driver, DataDir: b.DataDir,
		Brokers: server.BrokerCheck{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	svcd.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svcd.Shutdown(ctx)
	})
	f := &fixture{}
	// Live queue limits, as etcd's queue settings would give them: the
	// queue pages show them.
	live := func(cfg *brokerd.Config) {
		cfg.Queues = staticQueues{"emails": {MaxInFlight: 100, RatePerSec: 1000, Burst: 100, MaxInFlightPerKey: 5}}
	}
	f.c = testcluster.New(t, 3, live, testcluster.Admin, func(cfg *daemon.Config) { cfg.SvcdAddr = svcd.GRPCAddr() })
	f.cl = f.c.Client()
	f.dead = deadJobs(t, f.cl, "emails", 3)
	ctx := testutil.Context(t, 30*time.Second)

	rc, err := results.Dial(svcd.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	// The worker's record of the failed attempt of dead[0].
	dead, err := f.cl.GetJob(ctx, f.dead[0], raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StoreResult(ctx, results.Result{
		JobID: f.dead[0], Queue: "emails", Type: "t", LeaseToken: dead.LeaseToken, WorkerID: "worker-7",
		Attempt: 1, Status: results.StatusDead, Error: "smtp: 550 mailbox unavailable", StartedAt: time.Now().Add(-time.Second),
	}); err != nil {
		t.Fatal(err)
	}

	// One job run to success with a text output in svcd.
	res, err := f.cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "reports", Type: "pdf", Payload: []byte(`{"report":"q3"}`)})
	if err != nil {
		t.Fatal(err)
	}
	f.done = res[0].JobId
	jobs, err := f.cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"reports"}, MaxJobs: 1, MaxWait: durationpb.New(5 * time.Second), WorkerId: "worker-9"})
	if err != nil || len(jobs) != 1 || jobs[0].Id != f.done {
		t.Fatalf("fetch: %v %v", jobs, err)
	}
	if _, err := rc.StoreResult(ctx, results.Result{JobID: f.done, Queue: "reports", Type: "pdf", LeaseToken: jobs[0].LeaseToken, WorkerID: "worker-9",
		Attempt: 1, Status: results.StatusSucceeded, Output: []byte("report q3: 42 pages"), StartedAt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := f.cl.Ack(ctx, f.done, jobs[0].LeaseToken); err != nil {
		t.Fatal(err)
	}

	res, err = f.cl.Enqueue(ctx,
		&raftqv1.JobSpec{Queue: "reports", Type: "pdf", Payload: []byte("quarterly pdf")},
		&raftqv1.JobSpec{Queue: "reports", Type: "csv", Payload: []byte("a,b,c")},
		&raftqv1.JobSpec{Queue: "reports", Type: "csv", Payload: []byte{0xff, 0x00, 0xfe, 'r', 'a', 'w'}})
	if err != nil {
		t.Fatal(err)
	}
	f.pdf, f.csv, f.binary = res[0].JobId, res[1].JobId, res[2].JobId
	if _, _, err := f.cl.PutSchedule(ctx, &raftqv1.ScheduleSpec{Name: "nightly", Job: &raftqv1.JobSpec{Queue: "reports", Type: "nightly"},
		Interval: durationpb.New(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f.ui = base(f.c, follower(f.c)) + "/ui"
	return f
}

// page is one dashboard answer, redirects not followed.
type page struct {
	status   int
	location string
	body     string
}

var noRedirect = &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, u string) page {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, req)
}

// post sends a dashboard form as a browser on the same site would
// (hdr adds headers, e.g. a foreign Origin).
func post(t *testing.T, u string, form url.Values, hdr ...string) page {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return send(t, req)
}

// send makes req without following redirects (the dashboard answers
// forms with one).
func send(t *testing.T, req *http.Request) page {
	t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header.Get("Location"), string(b)}
}

func mustContain(t *testing.T, what string, p page, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(p.body, s) {
			t.Fatalf("%s: page lacks %q:\n%s", what, s, p.body)
		}
	}
}

func queueStats(t *testing.T, cl *client.Client, q string) *raftqv1.QueueStats {
	t.Helper()
	qs, err := cl.QueueStats(testutil.Context(t, 10*time.Second), q)
	if err != nil || len(qs) != 1 {
		t.Fatalf("queue stats %s: %v %v", q, qs, err)
	}
	return qs[0]
}

func queueNames(t *testing.T, cl *client.Client) []string {
	t.Helper()
	qs, err := cl.QueueStats(testutil.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, q := range qs {
		out = append(out, q.Queue)
	}
	return out
}

var pointsRE = regexp.MustCompile(`data-title="([^"]+)" data-points="(\d+)"`)

// chartPoints is the number of samples drawn per chart title.
func chartPoints(body string) map[string]int {
	out := map[string]int{}
	for _, m := range pointsRE.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = n
	}
	return out
}

// nodeStatus reads the health of each node row of the overview.
var nodeRE = regexp.MustCompile(`<tr data-node="([^"]+)" data-status="([a-z]+)">`)

func nodeStatus(body string) map[string]string {
	out := map[string]string{}
	for _, m := range nodeRE.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// waitPage polls a page until ok accepts it.
func waitPage(t *testing.T, u string, timeout time.Duration, ok func(page) bool) page {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := get(t, u)
		if p.status == 200 && ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: not as expected after %v:\n%d %s", u, timeout, p.status, p.body)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestDashboardPages renders every page of a follower's dashboard with
// real data and drives every action through the dashboard's own form
// endpoints: each changes the cluster's state, and each refused one
// (unconfirmed, cross-site, wrong state, unknown queue) changes nothing.
// Last, a killed node shows as DOWN.
func TestDashboardPages(t *testing.T) {
	f := newFixture(t)
	ui, cl := f.ui, f.cl

	// Overview: every node up, a leader, charts drawn from samples.
	leader := f.c.WaitLeader(10 * time.Second).ID()
	ov := waitPage(t, ui+"/", 20*time.Second, func(p page) bool {
		st := nodeStatus(p.body)
		pts := chartPoints(p.body)
		return len(st) == 3 && st["n1"] == "up" && st["n2"] == "up" && st["n3"] == "up" && pts["Throughput"] > 0 && pts["Queue depth"] > 0
	})
	mustContain(t, "overview", ov, `id="leader">`+leader+`<`, `id="nodes-up">3 / 3<`, `<svg`, `polyline class="line`,
		`href="/ui/queues/emails"`, `href="/ui/queues/reports"`, "Raft details")
	if live := get(t, ui+"/live/overview"); live.status != 200 || !strings.Contains(live.body, `id="nodes"`) || strings.Contains(live.body, "<html") {
		t.Fatalf("overview fragment: %d %s", live.status, live.body)
	}

	// Queues list and one queue's page.
	qs := get(t, ui+"/queues")
	mustContain(t, "queues", qs, `<a href="/ui/queues/emails">emails</a>`)
	// One Raft group: no groups table, no group column, as before groups.
	if strings.Contains(ov.body, `id="groups"`) || strings.Contains(ov.body, "(group 0)") || strings.Contains(qs.body, "<th>Group</th>") {
		t.Fatalf("one group, yet a groups table or column:\n%s\n%s", ov.body, qs.body)
	}
	q := get(t, ui+"/queues/emails")
	if q.status != 200 {
		t.Fatalf("queue page: %d %s", q.status, q.body)
	}
	mustContain(t, "queue page", q, `data-state="dead"`, `state=dead">3</a>`, `id="pause"`, `id="purge-all"`, `id="redrive-all"`, `data-title="Throughput"`,
		`id="limits"`, `<div class="value">100</div>`, `1000/s (burst 100)`, `5 in flight`)
	mustContain(t, "queue page without limits", get(t, ui+"/queues/reports"), `id="limits"`, `<div class="value">unlimited</div>`)
	if nf := get(t, ui+"/queues/no-such-queue"); nf.status != 404 || !strings.Contains(nf.body, "NOT_FOUND") || !strings.Contains(nf.body, "<html") {
		t.Fatalf("unknown queue page: %d %s", nf.status, nf.body)
	}
	if nf := get(t, ui+"/no/such/page"); nf.status != 404 || !strings.Contains(nf.body, "<html") {
		t.Fatalf("unknown dashboard path: %d %s", nf.status, nf.body)
	}
	if l := get(t, ui+"/live/queues/reports"); l.status != 200 || !strings.Contains(l.body, `data-state="ready"`) {
		t.Fatalf("queue fragment: %d %s", l.status, l.body)
	}

	// Schedules of the queue: pause and resume one; an unknown one is 404.
	mustContain(t, "schedules", get(t, ui+"/queues/reports"), `data-schedule="nightly"`, "every 24h0m0s", `action="/ui/schedules/nightly/pause"`)
	if p := post(t, ui+"/schedules/nightly/pause", nil); p.status != 303 || p.location != "/ui/queues/reports?done=schedule-paused" {
		t.Fatalf("pause schedule: %d %q %s", p.status, p.location, p.body)
	}
	if sc, err := cl.GetSchedule(testutil.Context(t, 10*time.Second), "nightly", raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil || !sc.GetSpec().GetPaused() {
		t.Fatalf("schedule after pause: %v %v", sc, err)
	}
	mustContain(t, "paused schedule", get(t, ui+"/queues/reports?done=schedule-paused"), "Schedule paused", `action="/ui/schedules/nightly/resume"`)
	if p := post(t, ui+"/schedules/nightly/resume", nil); p.status != 303 {
		t.Fatalf("resume schedule: %d %s", p.status, p.body)
	}
	if sc, err := cl.GetSchedule(testutil.Context(t, 10*time.Second), "nightly", raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil || sc.GetSpec().GetPaused() {
		t.Fatalf("schedule after resume: %v %v", sc, err)
	}
	if p := post(t, ui+"/schedules/nope/pause", nil); p.status != 404 {
		t.Fatalf("pause unknown schedule: %d", p.status)
	}

	// Job browser: filters and search by id.
	jb := get(t, ui+"/jobs?queue=reports&state=ready&type=csv")
	mustContain(t, "job browser", jb, `data-job="`+f.csv+`"`, `data-job="`+f.binary+`"`)
	if strings.Contains(jb.body, f.pdf) || strings.Contains(jb.body, f.done) {
		t.Fatalf("type/state filter let other jobs through:\n%s", jb.body)
	}
	all := get(t, ui+"/jobs")
	mustContain(t, "job browser, all", all, f.pdf, f.csv, f.binary, f.done, f.dead[0])
	if s := get(t, ui+"/jobs?id="+f.pdf); s.status != 303 || s.location != "/ui/jobs/"+f.pdf {
		t.Fatalf("search by id: %d %q", s.status, s.location)
	}
	if bad := get(t, ui+"/jobs?state=bogus"); bad.status != 400 {
		t.Fatalf("bad state filter: %d", bad.status)
	}
	mustContain(t, "created within", get(t, ui+"/jobs?queue=reports&within=1h"), f.pdf, f.done)
	if bad := get(t, ui+"/jobs?within=-5m"); bad.status != 400 {
		t.Fatalf("bad within filter: %d", bad.status)
	}

	// Job pages: text payload, binary payload, result and attempts.
	mustContain(t, "text job", get(t, ui+"/jobs/"+f.pdf), `<pre class="text">quarterly pdf</pre>`, `id="cancel"`)
	mustContain(t, "binary job", get(t, ui+"/jobs/"+f.binary), `data-binary="true"`, `<pre class="b64">/wD&#43;cmF3</pre>`, "ff 00 fe 72 61 77")
	mustContain(t, "succeeded job", get(t, ui+"/jobs/"+f.done), `id="result"`, "report q3: 42 pages", "worker-9", `{&#34;report&#34;:&#34;q3&#34;}`)
	mustContain(t, "dead job", get(t, ui+"/jobs/"+f.dead[0]), "worker-7", "550 mailbox unavailable", `id="redrive"`, `id="purge"`)
	if nf := get(t, ui+"/jobs/nope"); nf.status != 404 {
		t.Fatalf("unknown job page: %d", nf.status)
	}

	// Pause and resume.
	if p := post(t, ui+"/queues/reports/pause", nil); p.status != 303 || p.location != "/ui/queues/reports?done=paused" {
		t.Fatalf("pause: %d %q %s", p.status, p.location, p.body)
	}
	if !queueStats(t, cl, "reports").Paused {
		t.Fatal("pause form did not pause")
	}
	mustContain(t, "paused queue", get(t, ui+"/queues/reports?done=paused"), `id="notice"`, `id="resume"`)
	if p := post(t, ui+"/queues/reports/resume", nil); p.status != 303 {
		t.Fatalf("resume: %d %s", p.status, p.body)
	}
	if queueStats(t, cl, "reports").Paused {
		t.Fatal("resume form did not resume")
	}
	// Refused: a cross-site pause (403), a pause of an unknown queue (404,
	// the queue is not created).
	if p := post(t, ui+"/queues/reports/pause", nil, "Origin", "http://evil.example"); p.status != 403 {
		t.Fatalf("cross-site pause: %d", p.status)
	}
	if queueStats(t, cl, "reports").Paused {
		t.Fatal("cross-site pause paused the queue")
	}
	before := queueNames(t, cl)
	if p := post(t, ui+"/queues/ghost/pause", nil); p.status != 404 {
		t.Fatalf("pause unknown queue: %d", p.status)
	}
	if after := queueNames(t, cl); len(after) != len(before) {
		t.Fatalf("pausing an unknown queue created one: %v -> %v", before, after)
	}

	// Cancel: the first post only asks; confirm=yes cancels.
	p := post(t, ui+"/jobs/"+f.pdf+"/cancel", nil)
	mustContain(t, "cancel confirmation", p, `id="confirm"`, `name="confirm" value="yes"`, `action="/ui/jobs/`+f.pdf+`/cancel"`)
	if s := jobState(t, cl, f.pdf); s != raftqv1.JobState_JOB_STATE_READY {
		t.Fatalf("unconfirmed cancel changed the job: %v", s)
	}
	if p := post(t, ui+"/jobs/"+f.pdf+"/cancel", url.Values{"confirm": {"yes"}}); p.status != 303 || p.location != "/ui/jobs/"+f.pdf+"?done=cancelled" {
		t.Fatalf("cancel: %d %q %s", p.status, p.location, p.body)
	}
	if s := jobState(t, cl, f.pdf); s != raftqv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("cancelled job is %v", s)
	}
	// Refused: cancelling a succeeded job is a wrong state, nothing changes.
	if p := post(t, ui+"/jobs/"+f.done+"/cancel", url.Values{"confirm": {"yes"}}); p.status != 409 || !strings.Contains(p.body, "WRONG_STATE") {
		t.Fatalf("cancel succeeded job: %d %s", p.status, p.body)
	}
	if s := jobState(t, cl, f.done); s != raftqv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("refused cancel changed the job: %v", s)
	}

	// Redrive from the job page returns to it; a foreign return path is
	// ignored.
	if p := post(t, ui+"/queues/emails/dead/redrive", url.Values{"job_id": {f.dead[0]}, "return": {"/ui/jobs/" + f.dead[0]}}); p.status != 303 || p.location != "/ui/jobs/"+f.dead[0]+"?redriven=1" {
		t.Fatalf("redrive: %d %q %s", p.status, p.location, p.body)
	}
	if s := jobState(t, cl, f.dead[0]); s != raftqv1.JobState_JOB_STATE_READY {
		t.Fatalf("redriven job is %v", s)
	}
	if p := post(t, ui+"/queues/emails/dead/redrive", url.Values{"job_id": {f.dead[1]}, "return": {"//evil.example/x"}}); p.status != 303 || p.location != "/ui/queues/emails/dead?redriven=1" {
		t.Fatalf("redrive with foreign return: %d %q", p.status, p.location)
	}

	// Purge: refused without a selection, asks first, then deletes.
	if p := post(t, ui+"/queues/emails/dead/purge", nil); p.status != 400 {
		t.Fatalf("purge without selection: %d", p.status)
	}
	p = post(t, ui+"/queues/emails/dead/purge", url.Values{"job_id": {f.dead[2]}})
	mustContain(t, "purge confirmation", p, `id="confirm"`, `name="job_id" value="`+f.dead[2]+`"`)
	if s := jobState(t, cl, f.dead[2]); s != raftqv1.JobState_JOB_STATE_DEAD {
		t.Fatalf("unconfirmed purge changed the job: %v", s)
	}
	if p := post(t, ui+"/queues/emails/dead/purge", url.Values{"job_id": {f.dead[2]}, "confirm": {"yes"}}); p.status != 303 || p.location != "/ui/queues/emails?purged=1" {
		t.Fatalf("purge: %d %q %s", p.status, p.location, p.body)
	}
	if _, err := cl.GetJob(testutil.Context(t, 10*time.Second), f.dead[2], raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err == nil {
		t.Fatal("purged job still there")
	}
	mustContain(t, "after purge", get(t, ui+"/queues/emails?purged=1"), "Purged 1 dead job(s)", `state=dead">0</a>`)

	// A killed node shows as DOWN, with the others up.
	self := follower(f.c).ID()
	var victim string
	for _, n := range f.c.Up() {
		if n.ID() != self {
			victim = n.ID()
			break
		}
	}
	f.c.Kill(victim)
	down := waitPage(t, ui+"/", 20*time.Second, func(p page) bool { return nodeStatus(p.body)[victim] == "down" })
	st := nodeStatus(down.body)
	if st[self] != "up" {
		t.Fatalf("nodes after kill: %v", st)
	}
	mustContain(t, "node down", down, `id="nodes-up"><span class="badge down">2 / 3</span>`, ">DOWN<")
	h := call(t, "GET", strings.TrimSuffix(ui, "/ui")+"/v1/cluster/health", "")
	want(t, h, 200, "")
	for _, n := range h.body["nodes"].([]any) {
		n := n.(map[string]any)
		if wantSt := map[bool]string{true: "down", false: "up"}[n["node_id"] == victim]; n["status"] != wantSt {
			t.Fatalf("health API: %s is %v, want %s: %s", n["node_id"], n["status"], wantSt, h)
		}
	}

	// Quorum lost: the overview still renders, from this node's own state,
	// and says so.
	for _, n := range f.c.Up() {
		if n.ID() != self {
			f.c.Kill(n.ID())
		}
	}
	lost := waitPage(t, ui+"/", 30*time.Second, func(p page) bool {
		st := nodeStatus(p.body)
		return strings.Contains(p.body, `id="stale"`) && st[self] == "up" && len(st) == 3 && strings.Count(p.body, `data-status="down"`) == 2
	})
	mustContain(t, "quorum lost", lost, `href="/ui/queues/reports"`)
}

// TestDashboardInChromium drives a follower's dashboard in a real headless
// Chromium and clicks through every action: the overview (charts and
// nodes), a queue (pause, resume, pause its schedule), the job browser (filter, search by
// id), a job (result, attempts, redrive; cancel and purge through their
// confirmation pages), and the overview again after a node is killed.
// Screenshots of each go to the test's artifacts.
func TestDashboardInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	f := newFixture(t)
	ui, cl := f.ui, f.cl

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// The first action starts the browser, which lives as long as the
	// context of that call: it gets no timeout of its own.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 120*time.Second)
	defer cancel()
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	screenshot := func(name string) {
		t.Helper()
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		saveArtifact(t, name, shot)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	click := func(what, sel, waitFor string) {
		t.Helper()
		do(what, chromedp.Click(chromedp.CSS(sel)), chromedp.WaitVisible(chromedp.CSS(waitFor)))
	}

	// Overview: wait until the probes and a few samples are in.
	leader := f.c.WaitLeader(10 * time.Second).ID()
	waitPage(t, ui+"/", 20*time.Second, func(p page) bool {
		pts := chartPoints(p.body)
		return len(nodeStatus(p.body)) == 3 && pts["Throughput"] > 1
	})
	do("overview", chromedp.Navigate(ui+"/"), chromedp.WaitVisible(chromedp.CSS("#nodes")), chromedp.WaitVisible(chromedp.CSS("figure.chart svg")))
	if got := text("#leader"); got != leader {
		t.Fatalf("overview names leader %q, want %s", got, leader)
	}
	if got := text("#nodes-up"); got != "3 / 3" {
		t.Fatalf("nodes up %q", got)
	}
	// The script swaps the live part in.
	do("overview refresh", chromedp.WaitReady(chromedp.CSS("#overview[data-updated]")))
	screenshot("overview.png")

	// Queue page: click Pause, then Resume.
	do("queue link", chromedp.Click(chromedp.CSS(`#queue-summary a[href="/ui/queues/reports"]`)), chromedp.WaitVisible(chromedp.CSS("#depth")))
	click("pause", "#pause", "#resume")
	if !strings.Contains(text("#notice"), "Queue paused") || !queueStats(t, cl, "reports").Paused {
		t.Fatal("pause click did not pause")
	}
	screenshot("queue-paused.png")
	click("resume", "#resume", "#pause")
	if queueStats(t, cl, "reports").Paused {
		t.Fatal("resume click did not resume")
	}
	// The queue's schedule: Pause.
	click("pause schedule", `tr[data-schedule="nightly"] .schedule-pause`, `tr[data-schedule="nightly"] .schedule-resume`)
	if sc, err := cl.GetSchedule(testutil.Context(t, 10*time.Second), "nightly", raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil || !sc.GetSpec().GetPaused() {
		t.Fatalf("schedule after pause click: %v %v", sc, err)
	}
	screenshot("queue.png")

	// Job browser: filter reports/ready/csv.
	do("job browser", chromedp.Navigate(ui+"/jobs"), chromedp.WaitVisible(chromedp.CSS("#filters")),
		chromedp.SetValue(chromedp.CSS(`select[name="queue"]`), "reports"),
		chromedp.SetValue(chromedp.CSS(`select[name="state"]`), "ready"),
		chromedp.SendKeys(chromedp.CSS(`input[name="type"]`), "csv"),
		chromedp.Click(chromedp.CSS(`#filters button`)),
		// The answer marks the chosen filters (the form's own state is
		// not an attribute), so this waits for the filtered page.
		chromedp.WaitReady(chromedp.CSS(`select[name="state"] option[value="ready"][selected]`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-job="%s"]`, f.csv))))
	if n := eval(`String(document.querySelectorAll("#jobs tbody tr[data-job]").length)`); n != "2" {
		t.Fatalf("%s jobs listed for reports/ready/csv, want 2", n)
	}
	screenshot("jobs.png")

	// Search by id opens the succeeded job: result and output.
	do("search", chromedp.SendKeys(chromedp.CSS(`#search input`), f.done), chromedp.Submit(chromedp.CSS(`#search input`)),
		chromedp.WaitVisible(chromedp.CSS("#result")))
	if got := text("#result"); !strings.Contains(got, "report q3: 42 pages") {
		t.Fatalf("result: %q", got)
	}
	screenshot("job-succeeded.png")

	// A dead job: attempts from svcd, then Redrive.
	do("dead job", chromedp.Navigate(ui+"/jobs/"+f.dead[0]), chromedp.WaitVisible(chromedp.CSS("#attempts")))
	if got := text("#attempts"); !strings.Contains(got, "worker-7") || !strings.Contains(got, "550 mailbox unavailable") {
		t.Fatalf("attempts table: %q", got)
	}
	screenshot("job.png")
	click("redrive", "#redrive", "#notice")
	if got := text("#notice"); !strings.Contains(got, "Redrove 1 job") {
		t.Fatalf("notice %q", got)
	}
	if s := jobState(t, cl, f.dead[0]); s != raftqv1.JobState_JOB_STATE_READY {
		t.Fatalf("redriven job is %v", s)
	}

	// Cancel through the confirmation page: "Keep it" changes nothing,
	// confirming cancels.
	do("job to cancel", chromedp.Navigate(ui+"/jobs/"+f.pdf), chromedp.WaitVisible(chromedp.CSS("#cancel")))
	click("cancel", "#cancel", "#confirm")
	screenshot("confirm-cancel.png")
	click("keep it", "#confirm-no", "#cancel")
	if s := jobState(t, cl, f.pdf); s != raftqv1.JobState_JOB_STATE_READY {
		t.Fatalf("kept job is %v", s)
	}
	click("cancel again", "#cancel", "#confirm")
	click("confirm cancel", "#confirm-yes", "#notice")
	if got := text("#state"); got != "cancelled" {
		t.Fatalf("job page state %q after cancel", got)
	}
	if s := jobState(t, cl, f.pdf); s != raftqv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("cancelled job is %v", s)
	}

	// Dead letters: purge one through its confirmation.
	row := fmt.Sprintf(`tr[data-job="%s"]`, f.dead[1])
	do("dead letters", chromedp.Navigate(ui+"/queues/emails/dead"), chromedp.WaitVisible(chromedp.CSS(row)))
	screenshot("dead-letters.png")
	click("purge", row+" button.purge", "#confirm")
	click("confirm purge", "#confirm-yes", "#notice")
	if got := text("#notice"); !strings.Contains(got, "Purged 1 dead job") {
		t.Fatalf("notice %q", got)
	}
	if _, err := cl.GetJob(testutil.Context(t, 10*time.Second), f.dead[1], raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err == nil {
		t.Fatal("purged job still there")
	}
	if n := eval(`String(document.querySelectorAll("#dead tbody tr").length)`); n != "1" {
		t.Fatalf("%s dead rows after purge, want 1", n)
	}

	// Kill a node: the open overview shows it DOWN on its next refresh.
	self := follower(f.c).ID()
	var victim string
	for _, n := range f.c.Up() {
		if n.ID() != self {
			victim = n.ID()
			break
		}
	}
	do("overview", chromedp.Navigate(ui+"/"), chromedp.WaitVisible(chromedp.CSS("#nodes")))
	f.c.Kill(victim)
	do("node down", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-node="%s"][data-status="down"]`, victim))))
	if got := text(fmt.Sprintf(`tr[data-node="%s"] .health`, victim)); got != "DOWN" {
		t.Fatalf("killed node's health %q", got)
	}
	screenshot("node-down.png")
}

// TestDashboardWorkflowJob: a waiting job's page shows its parents (with
// the policy), what it waits on, and the parent's page its dependants;
// the queues page counts waiting jobs.
func TestDashboardWorkflowJob(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := f.cl.Enqueue(ctx, client.NewJob("flows", "child", nil, client.DependsOn(f.pdf), client.RunAnyway(), client.WithConcurrencyKey("tenant-7")))
	if err != nil {
		t.Fatal(err)
	}
	child := res[0].JobId
	mustContain(t, "waiting job", waitPage(t, f.ui+"/jobs/"+child, 10*time.Second, func(p page) bool {
		return strings.Contains(p.body, `id="waiting-on"`)
	}), `id="parents"`, f.pdf, "run_anyway", `id="waiting-on"`, "waiting", `id="concurrency-key">tenant-7<`)
	mustContain(t, "parent job", waitPage(t, f.ui+"/jobs/"+f.pdf, 10*time.Second, func(p page) bool {
		return strings.Contains(p.body, child)
	}), `id="dependants"`, child)
	waitPage(t, f.ui+"/queues", 10*time.Second, func(p page) bool {
		return strings.Contains(p.body, `data-field="waiting">1<`)
	})
}
