package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/adminapi"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// groupRowRE reads the overview's Raft groups table: one row per group,
// then the row's cells up to the next row.
var groupRowRE = regexp.MustCompile(`(?s)<tr data-group="(\d+)" data-leader="([^"]*)" data-state="([^"]*)">(.*?)</tr>`)

// TestGroupsAdminAndDashboard: on a 3-node cluster running 3 Raft
// groups, a follower's admin API reports every group (its leader — the
// node that really leads it —, this node's state in it, its members) and
// each queue's group and rates; its overview page shows the groups table with each
// group's leader, state, members and the queues it holds, and its queues
// page each queue's group.
func TestGroupsAdminAndDashboard(t *testing.T) {
	const groups = fixtureGroups
	f := newGroupsFixture(t)
	c, n, u, leaders, qs := f.c, f.n, f.u, f.leaders, f.qs
	wantState := func(g int) string {
		if leaders[g].ID() == n.ID() {
			return "Leader"
		}
		return "Follower"
	}

	t.Run("api cluster", func(t *testing.T) {
		r := call(t, "GET", u+"/v1/cluster", "")
		want(t, r, 200, "")
		var cv adminapi.Cluster
		if err := json.Unmarshal(r.raw, &cv); err != nil {
			t.Fatal(err)
		}
		if cv.NodeID != n.ID() || cv.GroupCount != groups || len(cv.Groups) != groups {
			t.Fatalf("cluster: node %s, group_count %d, %d groups", cv.NodeID, cv.GroupCount, len(cv.Groups))
		}
		for g, gr := range cv.Groups {
			if gr.Group != uint32(g) || gr.LeaderID != leaders[g].ID() || gr.LeaderAddr != leaders[g].GRPCAddr() || gr.State != wantState(g) {
				t.Errorf("group %d: %+v, want leader %s at %s, state %s", g, gr, leaders[g].ID(), leaders[g].GRPCAddr(), wantState(g))
			}
			if len(gr.Members) != 3 || gr.Term < 1 {
				t.Errorf("group %d: members %+v, term %d", g, gr.Members, gr.Term)
			}
		}
	})

	t.Run("api queues", func(t *testing.T) {
		r := call(t, "GET", u+"/v1/queues", "")
		want(t, r, 200, "")
		var body struct {
			Queues []adminapi.Queue `json:"queues"`
		}
		if err := json.Unmarshal(r.raw, &body); err != nil {
			t.Fatal(err)
		}
		if len(body.Queues) != groups {
			t.Fatalf("queues %+v", body.Queues)
		}
		for _, q := range body.Queues {
			g := placement.Queue(q.Name, groups)
			if q.Group != g || q.Counts["ready"] != int64(g)+1 {
				t.Errorf("queue %+v, want group %d with %d ready", q, g, g+1)
			}
		}
		r = call(t, "GET", u+"/v1/queues/"+qs[2], "")
		want(t, r, 200, "")
		var one adminapi.Queue
		if err := json.Unmarshal(r.raw, &one); err != nil || one.Name != qs[2] || one.Group != 2 {
			t.Errorf("queue %s: %v %s", qs[2], err, r.raw)
		}
	})

	// Rates come from every group's state: a queue of group 2 is not
	// idle because group 0 never saw it.
	t.Run("rates", func(t *testing.T) {
		testutil.WaitFor(t, 15*time.Second, "every queue's enqueue rate above 0", func() bool {
			r := call(t, "GET", u+"/v1/queues", "")
			var body struct {
				Queues []adminapi.Queue `json:"queues"`
			}
			if r.status != 200 || json.Unmarshal(r.raw, &body) != nil || len(body.Queues) != groups {
				return false
			}
			for _, q := range body.Queues {
				if q.Rates == nil || q.Rates.EnqueuedPerSecond <= 0 {
					return false
				}
			}
			return true
		})
	})

	t.Run("overview", func(t *testing.T) {
		p := get(t, u+"/ui/")
		if p.status != 200 {
			t.Fatalf("overview: %d %s", p.status, p.body)
		}
		mustContain(t, "overview", p, `<table id="groups">`, "Leader (group 0)")
		rows := groupRowRE.FindAllStringSubmatch(p.body, -1)
		if len(rows) != groups {
			t.Fatalf("%d group rows, want %d:\n%s", len(rows), groups, p.body)
		}
		for g, row := range rows {
			if row[1] != fmt.Sprint(g) || row[2] != leaders[g].ID() || row[3] != wantState(g) {
				t.Errorf("group row %d: group %s leader %s state %s; want leader %s, state %s", g, row[1], row[2], row[3], leaders[g].ID(), wantState(g))
			}
			cells := row[4]
			if !strings.Contains(cells, leaders[g].GRPCAddr()) {
				t.Errorf("group %d row lacks its leader's address %s: %s", g, leaders[g].GRPCAddr(), cells)
			}
			for _, m := range c.Up() {
				if !strings.Contains(cells, `data-member="`+m.ID()+`"`) {
					t.Errorf("group %d row lacks member %s: %s", g, m.ID(), cells)
				}
			}
			if !strings.Contains(cells, `data-member="`+leaders[g].ID()+`">`+leaders[g].ID()+` (leader)`) {
				t.Errorf("group %d row does not mark %s as leader: %s", g, leaders[g].ID(), cells)
			}
			// Each group lists its own queue and no other.
			for og, q := range qs {
				if has := strings.Contains(cells, `href="/ui/queues/`+q+`"`); has != (og == g) {
					t.Errorf("group %d row lists queue %s (group %d): %v\n%s", g, q, og, has, cells)
				}
			}
		}
		// The live fragment live.js swaps in has it too.
		if l := get(t, u+"/ui/live/overview"); l.status != 200 || len(groupRowRE.FindAllString(l.body, -1)) != groups {
			t.Errorf("live overview: %d\n%s", l.status, l.body)
		}
	})

	t.Run("queues page", func(t *testing.T) {
		p := get(t, u+"/ui/queues")
		if p.status != 200 {
			t.Fatalf("queues: %d %s", p.status, p.body)
		}
		mustContain(t, "queues", p, "<th>Group</th>")
		for g, q := range qs {
			mustContain(t, "queues", p, fmt.Sprintf(`<tr data-queue="%s">
<td><a href="/ui/queues/%s">%s</a></td>
<td data-field="group"><a href="/ui/#groups">%d</a></td>`, q, q, q, g))
		}
	})

	// Last: a queue moving from group 0 to group 1 (its ready job keeps
	// it draining) shows group 1 and both groups, in the API, the queues
	// page and the overview's groups table; its count is both groups'.
	t.Run("moving queue", func(t *testing.T) {
		ctx := testutil.Context(t, 30*time.Second)
		cl := c.Client()
		if _, err := cl.MoveQueue(ctx, qs[0], 1); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: qs[0], Type: "t"}); err != nil {
			t.Fatal(err)
		}
		var one adminapi.Queue
		testutil.WaitFor(t, 10*time.Second, "the queue shows its move", func() bool {
			r := call(t, "GET", u+"/v1/queues/"+qs[0], "")
			return r.status == 200 && json.Unmarshal(r.raw, &one) == nil && one.Group == 1 && len(one.Groups) == 2
		})
		if one.Groups[0] != 1 || one.Groups[1] != 0 || one.Counts["ready"] != 2 {
			t.Fatalf("moving queue %+v: want groups [1 0] and 2 ready (one in each)", one)
		}
		p := get(t, u+"/ui/queues")
		mustContain(t, "queues", p, fmt.Sprintf(`<td data-field="group"><a href="/ui/#groups">1,0</a></td>`))
	})
}

const fixtureGroups = 3

// groupsFixture is a 3-node cluster running 3 Raft groups with every
// admin server on, leaderships settled, and one queue per group holding
// g+1 ready jobs (a count read from the wrong group shows).
type groupsFixture struct {
	c       *testcluster.Cluster
	n       *brokerd.Node   // the node whose admin server is used: not group 0's leader
	u       string          // its admin server, http://…
	leaders []*brokerd.Node // each group's leader
	qs      []string        // qs[g] is a queue of group g
}

func newGroupsFixture(t *testing.T) groupsFixture {
	t.Helper()
	const groups = fixtureGroups
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups }, testcluster.Admin)
	leaders := c.WaitGroupsSettled(30 * time.Second)
	// A node that does not lead group 0 (the cluster's "leader"), so its
	// view is a follower's in group 0 and a leader's in another.
	var n *brokerd.Node
	for _, m := range c.Up() {
		if m.ID() != leaders[0].ID() {
			n = m
		}
	}
	u := base(c, n)

	qs := placement.QueuesPerGroup("aq", groups)
	cl := c.Client()
	ctx := testutil.Context(t, 30*time.Second)
	for g, q := range qs {
		// Group g's queue gets g+1 jobs: a count read from the wrong
		// group shows.
		var specs []*raftqv1.JobSpec
		for range g + 1 {
			specs = append(specs, &raftqv1.JobSpec{Queue: q, Type: "t"})
		}
		if _, err := cl.Enqueue(ctx, specs...); err != nil {
			t.Fatal(err)
		}
	}
	return groupsFixture{c: c, n: n, u: u, leaders: leaders, qs: qs}
}

// TestGroupsDashboardInChromium: in a browser, a 3-group cluster's
// overview shows the Raft groups table, which stays whole when live.js
// swaps the live part in; a queue named in it opens its page; the queues
// page shows each queue's group. Screenshots go to the test's artifacts.
func TestGroupsDashboardInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	f := newGroupsFixture(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	screenshot := func(name string) {
		t.Helper()
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		saveArtifact(t, name, shot)
	}
	checkGroups := func(when string) {
		t.Helper()
		if n := eval(`String(document.querySelectorAll("#groups tbody tr[data-group]").length)`); n != strconv.Itoa(fixtureGroups) {
			t.Fatalf("%s: %s group rows, want %d", when, n, fixtureGroups)
		}
		for g, l := range f.leaders {
			row := fmt.Sprintf(`#groups tr[data-group="%d"]`, g)
			if got := text(row + " td:nth-child(2)"); got != l.ID() {
				t.Errorf("%s: group %d leader %q, want %s", when, g, got, l.ID())
			}
			if got := text(row + " td.queues"); got != f.qs[g] {
				t.Errorf("%s: group %d queues %q, want %s", when, g, got, f.qs[g])
			}
		}
	}

	do("overview", chromedp.Navigate(f.u+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#groups")))
	checkGroups("overview")
	do("overview refresh", chromedp.WaitReady(chromedp.CSS("#overview[data-updated]")))
	checkGroups("overview after a live refresh")
	screenshot("groups-overview.png")

	q := f.qs[2]
	do("queue link", chromedp.Click(chromedp.CSS(`#groups tr[data-group="2"] a[href="/ui/queues/`+q+`"]`)), chromedp.WaitVisible(chromedp.CSS("#depth")))
	if loc := eval(`location.pathname`); loc != "/ui/queues/"+q {
		t.Fatalf("queue link went to %s", loc)
	}

	do("queues", chromedp.Navigate(f.u+"/ui/queues"), chromedp.WaitReady(chromedp.CSS("#queues[data-updated]")))
	for g, q := range f.qs {
		if got := text(fmt.Sprintf(`tr[data-queue="%s"] td[data-field="group"]`, q)); got != strconv.Itoa(g) {
			t.Errorf("queues page: %s in group %q, want %d", q, got, g)
		}
	}
	screenshot("groups-queues.png")
}
