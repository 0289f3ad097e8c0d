package main

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/adminapi"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// TestGroupsCommands: against a real 3-node cluster running 3 Raft
// groups, `cluster status` shows every node's view of every group — the
// leader that really leads it, the node's own state in it, its members —
// in table and JSON; `queues group` names the group placement puts each
// queue in and that group's leader, refusing a queue nobody used unless
// --new; `queues list` has each queue's group.
func TestGroupsCommands(t *testing.T) {
	const groups = 3
	c := testcluster.New(t, 3, func(cfg *brokerd.Config) { cfg.Groups = groups })
	leaders := c.WaitGroupsSettled(30 * time.Second)
	b := strings.Join(c.Addrs(), ",")
	byID := map[string]*brokerd.Node{}
	for _, n := range c.Up() {
		byID[n.ID()] = n
	}

	// One queue in each group, each with a job.
	qs := placement.QueuesPerGroup("gq", groups)
	ctx := testutil.Context(t, 30*time.Second)
	for _, q := range qs {
		if _, err := c.Client().Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("cluster status", func(t *testing.T) {
		var views []struct {
			Addr  string            `json:"addr"`
			Error string            `json:"error"`
			Node  *adminapi.Cluster `json:"node"`
		}
		ctlJSON(t, b, &views, "cluster", "status")
		if len(views) != 3 {
			t.Fatalf("%d views, want 3", len(views))
		}
		for _, v := range views {
			if v.Node == nil {
				t.Fatalf("%s: %s", v.Addr, v.Error)
			}
			if v.Node.GroupCount != groups || len(v.Node.Groups) != groups {
				t.Fatalf("%s: group_count %d, %d groups, want %d", v.Addr, v.Node.GroupCount, len(v.Node.Groups), groups)
			}
			for g, gr := range v.Node.Groups {
				l := leaders[g]
				if gr.Group != uint32(g) || gr.LeaderID != l.ID() || gr.LeaderAddr != l.GRPCAddr() {
					t.Errorf("%s: group %d: %+v, want leader %s at %s", v.Addr, g, gr, l.ID(), l.GRPCAddr())
				}
				want := "Follower"
				if v.Node.NodeID == l.ID() {
					want = "Leader"
				}
				if gr.State != want {
					t.Errorf("%s (%s): state in group %d %q, want %q", v.Addr, v.Node.NodeID, g, gr.State, want)
				}
				if gr.Term < 1 || gr.AppliedIndex < 1 {
					t.Errorf("%s: group %d: term %d, applied %d", v.Addr, g, gr.Term, gr.AppliedIndex)
				}
				var ids []string
				for _, m := range gr.Members {
					ids = append(ids, m.NodeID)
					if m.Leader != (m.NodeID == l.ID()) {
						t.Errorf("%s: group %d: member %+v, leader is %s", v.Addr, g, m, l.ID())
					}
				}
				if len(ids) != 3 {
					t.Errorf("%s: group %d members %v, want 3", v.Addr, g, ids)
				}
			}
		}

		// The table: after each node's line, one row per node and group.
		out := ctlOK(t, b, "cluster", "status")
		_, grp, ok := strings.Cut(out, "\n\n")
		if !ok {
			t.Fatalf("no groups table:\n%s", out)
		}
		lines := strings.Split(strings.TrimSpace(grp), "\n")
		if f := strings.Fields(lines[0]); strings.Join(f, " ") != "NODE GROUP STATE LEADER LEADER ADDR TERM APPLIED MEMBERS" {
			t.Fatalf("groups header %q", lines[0])
		}
		rows := map[string]bool{}
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			if len(f) != 8 {
				t.Fatalf("groups row %q", line)
			}
			g, err := strconv.Atoi(f[1])
			if err != nil || g < 0 || g >= groups {
				t.Fatalf("groups row %q: group %q", line, f[1])
			}
			if f[3] != leaders[g].ID() || f[4] != leaders[g].GRPCAddr() || !strings.Contains(f[7], leaders[g].ID()+"*") {
				t.Errorf("groups row %q: group %d is led by %s at %s", line, g, leaders[g].ID(), leaders[g].GRPCAddr())
			}
			wantState := "Follower"
			if f[0] == leaders[g].ID() {
				wantState = "Leader"
			}
			if f[2] != wantState {
				t.Errorf("groups row %q: state %s, want %s (group %d is led by %s)", line, f[2], wantState, g, leaders[g].ID())
			}
			rows[f[0]+"/"+f[1]] = true
		}
		if len(rows) != 3*groups {
			t.Errorf("%d distinct node/group rows, want %d:\n%s", len(rows), 3*groups, out)
		}
	})

	t.Run("queues group", func(t *testing.T) {
		var got struct {
			GroupCount uint32                    `json:"group_count"`
			Queues     []adminapi.QueuePlacement `json:"queues"`
		}
		ctlJSON(t, b, &got, append([]string{"queues", "group"}, qs...)...)
		if got.GroupCount != groups || len(got.Queues) != groups {
			t.Fatalf("%+v", got)
		}
		for g, pl := range got.Queues {
			if pl.Queue != qs[g] || pl.Group != uint32(g) || pl.LeaderID != leaders[g].ID() || pl.LeaderAddr != leaders[g].GRPCAddr() {
				t.Errorf("%+v, want group %d led by %s at %s", pl, g, leaders[g].ID(), leaders[g].GRPCAddr())
			}
			// Where the group's own replicas keep the queue.
			if st := byID[pl.LeaderID].Groups()[g].FSM().Stats([]string{pl.Queue}); len(st) != 1 || st[0].Counts[fsm.StateReady] != 1 {
				t.Errorf("group %d's leader holds %+v of %s", g, st, pl.Queue)
			}
		}
		out := ctlOK(t, b, "queues", "group", qs[1])
		if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) != 4 || f[0] != qs[1] || f[1] != "1" || f[2] != leaders[1].ID() || f[3] != leaders[1].GRPCAddr() {
			t.Errorf("table:\n%s", out)
		}

		// A name nobody used is refused (a typo would otherwise get an
		// answer), unless asked where a new queue would go.
		if out, err := ctl(t, b, "queues", "group", "never-used"); err == nil || !strings.Contains(err.Error(), `unknown queue "never-used"`) || !strings.Contains(err.Error(), "--new") {
			t.Fatalf("unknown queue: %v\n%s", err, out)
		}
		ctlJSON(t, b, &got, "queues", "group", "--new", "never-used")
		if len(got.Queues) != 1 || got.Queues[0].Group != placement.Queue("never-used", groups) {
			t.Fatalf("--new: %+v", got)
		}
		if _, err := ctl(t, b, "queues", "group", ""); err == nil || !strings.Contains(err.Error(), "empty queue name") {
			t.Fatalf("empty name: %v", err)
		}
	})

	t.Run("queues list", func(t *testing.T) {
		var got struct {
			Queues []adminapi.Queue `json:"queues"`
		}
		ctlJSON(t, b, &got, "queues", "list")
		if len(got.Queues) != groups {
			t.Fatalf("%+v", got)
		}
		for _, q := range got.Queues {
			if want := placement.Queue(q.Name, groups); q.Group != want || q.Counts["ready"] != 1 {
				t.Errorf("%+v, want group %d, 1 ready", q, want)
			}
		}
		out := ctlOK(t, b, "queues", "list", qs[2])
		lines := strings.Split(out, "\n")
		if h := strings.Fields(lines[0]); len(h) < 2 || h[1] != "GROUP" {
			t.Fatalf("header %q", lines[0])
		}
		if f := strings.Fields(lines[1]); f[0] != qs[2] || f[1] != "2" {
			t.Errorf("row %q", lines[1])
		}
	})

	// `queues move` moves gq's group-0 queue to group 1; `queues
	// placements` follows it to done (its one job is taken and acked so
	// the old group drains); a typo or a bad group is refused.
	t.Run("queues move", func(t *testing.T) {
		q := qs[0]
		if _, err := ctl(t, b, "queues", "move", "nosuch", "--to", "1"); err == nil {
			t.Fatal("moving an unknown queue was not refused")
		}
		if _, err := ctl(t, b, "queues", "move", q, "--to", "7"); err == nil {
			t.Fatal("moving to group 7 of 3 was not refused")
		}
		var mv struct {
			Queue, Phase string
			Group        uint32
			FromGroup    uint32 `json:"from_group"`
		}
		ctlJSON(t, b, &mv, "queues", "move", q, "--to", "1")
		if mv.Queue != q || mv.Group != 1 || mv.FromGroup != 0 || mv.Phase == "done" {
			t.Fatalf("move answered %+v", mv)
		}
		js, err := c.Client().Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 1, MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"})
		if err != nil || len(js) != 1 {
			t.Fatalf("fetch %v %v", js, err)
		}
		if err := c.Client().Ack(ctx, js[0].GetId(), js[0].GetLeaseToken()); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			var pl struct {
				Placements []struct {
					Queue, Phase string
					Group        uint32
				}
			}
			ctlJSON(t, b, &pl, "queues", "placements")
			if len(pl.Placements) == 1 && pl.Placements[0].Queue == q && pl.Placements[0].Phase == "done" && pl.Placements[0].Group == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("placements %+v\n%s", pl, ctlOK(t, b, "queues", "placements"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		out := ctlOK(t, b, "queues", "placements")
		if !strings.Contains(out, "LEFT IN FROM GROUP") || !strings.Contains(out, q) {
			t.Fatalf("placements table:\n%s", out)
		}
		// `queues partition` spreads a new queue over groups 1 and 2 (its
		// own group added first).
		var pt struct {
			Queue      string
			Partitions []uint32
		}
		ctlJSON(t, b, &pt, "queues", "partition", "spread", "--groups", "1,2")
		if pt.Queue != "spread" || len(pt.Partitions) < 2 || pt.Partitions[0] != placement.Queue("spread", groups) {
			t.Fatalf("partition answered %+v", pt)
		}
		if _, err := ctl(t, b, "queues", "partition", "spread", "--groups", "0,1"); err == nil {
			t.Fatal("partitioning twice was not refused")
		}
		if out := ctlOK(t, b, "queues", "placements"); !strings.Contains(out, "spread") {
			t.Fatalf("placements table without the partitioned queue:\n%s", out)
		}
		// bench --partition spreads its fresh queue over every group.
		var line struct {
			Partitioned bool    `json:"partitioned"`
			Jobs        float64 `json:"jobs"`
		}
		ctlJSON(t, b, &line, "bench", "enqueue", "--partition", "--duration", "300ms", "--producers", "4", "--clients", "1")
		var all struct {
			Placements []struct{ Partitions []uint32 }
		}
		ctlJSON(t, b, &all, "queues", "placements")
		n := 0
		for _, p := range all.Placements {
			if len(p.Partitions) == groups {
				n++
			}
		}
		if !line.Partitioned || n != 1 {
			t.Fatalf("bench --partition: %+v, %d queues over %d groups in %+v", line, n, groups, all)
		}
	})

	// The last: it moves a leadership.
	t.Run("cluster transfer --group", func(t *testing.T) {
		old := c.GroupLeader(2)
		var tr struct {
			LeaderID string `json:"leader_id"`
		}
		ctlJSON(t, b, &tr, "cluster", "transfer", "--group", "2")
		if tr.LeaderID == "" || tr.LeaderID == old.ID() {
			t.Fatalf("transfer of group 2 from %s: %+v", old.ID(), tr)
		}
		// Group 2's leadership is what moved.
		if n := c.GroupLeader(2); n != nil && n.ID() == old.ID() {
			t.Fatalf("group 2 still led by %s", old.ID())
		}
	})
}
