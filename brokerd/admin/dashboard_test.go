package admin_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/testcluster"
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

// artifactDir is where screenshots go: t.ArtifactDir() (kept with
// `go test -artifacts -outputdir DIR`), copied to $RAFTQ_TEST_ARTIFACTS/<test>
// or, without it, $TMPDIR/raftq-test-artifacts/<test>, which outlives the
// test; the path is logged.
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

// TestDashboardInChromium loads the dashboard of a follower in a real
// headless Chromium: the cluster page, live queue depths, a job's attempt
// history from svcd, and the dead letters, where it clicks Redrive and
// checks the job is ready again in the cluster.
func TestDashboardInChromium(t *testing.T) {
	chromium := chromiumPath(t)

	// svcd holds the attempt history the job page shows.
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

	c := testcluster.New(t, 3, func(cfg *brokerd.Config) {
		cfg.AdminAddr = "127.0.0.1:0"
		cfg.SvcdAddr = svcd.GRPCAddr()
	})
	cl := c.Client()
	ids := deadJobs(t, cl, "emails", 3)
	if _, err := cl.Enqueue(ctxT(t, 10*time.Second), &raftqv1.JobSpec{Queue: "reports", Type: "t"}); err != nil {
		t.Fatal(err)
	}
	// The worker's record of the failed attempt of ids[0].
	dead, err := cl.GetJob(ctxT(t, 10*time.Second), ids[0], raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := results.Dial(svcd.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := rc.StoreResult(ctxT(t, 10*time.Second), results.Result{
		JobID: ids[0], Queue: "emails", Type: "t", LeaseToken: dead.LeaseToken, WorkerID: "worker-7",
		Attempt: 1, Status: results.StatusDead, Error: "smtp: 550 mailbox unavailable", StartedAt: time.Now().Add(-time.Second),
	}); err != nil {
		t.Fatal(err)
	}
	ui := base(follower(c)) + "/ui"
	// The JSON API serves the same history.
	r := call(t, "GET", base(follower(c))+"/v1/jobs/"+ids[0]+"/attempts", "")
	want(t, r, 200, "")
	if as := r.body["attempts"].([]any); len(as) != 1 || as[0].(map[string]any)["worker_id"] != "worker-7" || as[0].(map[string]any)["outcome"] != "stored" {
		t.Fatalf("attempts: %s", r)
	}

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
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
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

	// Cluster page: who leads.
	do("cluster page", chromedp.Navigate(ui+"/"), chromedp.WaitVisible(chromedp.CSS("#members")))
	if got, l := text("#leader"), c.WaitLeader(10*time.Second); got != l.ID() {
		t.Fatalf("cluster page names leader %q, want %s", got, l.ID())
	}
	screenshot("cluster.png")

	// Queues: the script refreshes depths from the JSON API.
	do("queues page", chromedp.Navigate(ui+"/queues"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="emails"]`)),
		chromedp.WaitReady(chromedp.CSS(`table[data-updated]`)))
	if got := text(`tr[data-queue="emails"] [data-field="dead"]`); got != "3" {
		t.Fatalf("queues page: %q dead in emails, want 3", got)
	}
	screenshot("queues.png")

	// The job page shows svcd's attempt history.
	do("job page", chromedp.Navigate(ui+"/jobs/"+ids[0]), chromedp.WaitVisible(chromedp.CSS("#attempts")))
	if got := text("#attempts"); !strings.Contains(got, "worker-7") || !strings.Contains(got, "550 mailbox unavailable") {
		t.Fatalf("attempts table: %q", got)
	}
	screenshot("job.png")

	// Dead letters: click Redrive on the first job.
	row := fmt.Sprintf(`tr[data-job="%s"]`, ids[0])
	do("dead letters page", chromedp.Navigate(ui+"/queues/emails/dead"), chromedp.WaitVisible(chromedp.CSS(row)))
	screenshot("dead-letters.png")
	do("redrive click", chromedp.Click(chromedp.CSS(row+" button.redrive")), chromedp.WaitVisible(chromedp.CSS("#notice")))
	if got := text("#notice"); !strings.Contains(got, "Redrove 1 job") {
		t.Fatalf("notice %q", got)
	}
	screenshot("after-redrive.png")
	if s := jobState(t, cl, ids[0]); s != raftqv1.JobState_JOB_STATE_READY {
		t.Fatalf("redriven job is %v, want ready", s)
	}
	for _, id := range ids[1:] {
		if s := jobState(t, cl, id); s != raftqv1.JobState_JOB_STATE_DEAD {
			t.Fatalf("job %s is %v, want still dead", id, s)
		}
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#dead tbody tr").length`))
	if err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Fatalf("%d dead rows after redrive, want 2", rows)
	}
}
