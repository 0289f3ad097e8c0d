// Package nemesis injects faults into a control.Cluster while the workload
// runs, and records each fault interval in the history: partitions of
// every shape, packet loss, duplication and slowness, SIGKILL and
// SIGSTOP of one node, the leader, a minority, a majority or all, clock
// offsets, membership changes, crash points, and the compound pause/kill
// sequence. A Schedule decides when: a quiet start, then faults (alone or
// mixed) separated by fault-free periods, then a full heal.
package nemesis

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"sort"
	"strings"
	"time"

	"github.com/raftq/raftq/jepsen/control"
	"github.com/raftq/raftq/jepsen/history"
	"github.com/raftq/raftq/jepsen/workload"
)

// Env is what faults act on.
type Env struct {
	C   *control.Cluster
	W   *workload.Runner
	Rec *history.Recorder
	Rng *rand.Rand
	Log *slog.Logger
	// Active are the current voters; Spares the provisioned nodes outside
	// the configuration (membership faults swap them).
	Active []*control.Node
	Spares []*control.Node
	// Self is the jepsen binary, started as the packet delayer.
	Self string
	// Groups is the Raft group count the nodes run (0 or 1: one group).
	Groups int
}

// Heal undoes one fault.
type Heal func(ctx context.Context) error

// Fault is one kind of fault. Inject starts it and says what it did; the
// returned Heal undoes it.
type Fault struct {
	Family string
	Name   string
	// Exclusive faults run alone, never mixed with others.
	Exclusive bool
	// Optional faults are left out of "all" and must be named: they find
	// a known, not yet fixed weakness (see DESIGN.md).
	Optional bool
	Inject   func(ctx context.Context, e *Env) (desc string, heal Heal, err error)
}

// ID is "family/name".
func (f Fault) ID() string { return f.Family + "/" + f.Name }

func noHeal(context.Context) error { return nil }

func ids(nodes []*control.Node) string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.ID)
	}
	return strings.Join(s, ",")
}

// leader is the active node that leads, or a random active node when none
// does (the fault still hits someone).
func (e *Env) leader(ctx context.Context) *control.Node {
	n, _ := e.leaderNote(ctx)
	return n
}

// leaderNote is leader and what it leads. With several Raft groups "the
// leader" is per group: it is the leader of a random group (leaders are
// balanced over the nodes, so each node leads about as many groups and
// the draw moves leader faults around the groups), and the note names
// every group the node leads, all of which the fault hits.
func (e *Env) leaderNote(ctx context.Context) (*control.Node, string) {
	if e.Groups > 1 {
		leaders := e.C.GroupLeaders(ctx)
		var cands []int
		for g, l := range leaders {
			if l != nil && e.active(l) {
				cands = append(cands, g)
			}
		}
		if len(cands) == 0 {
			return e.Active[e.Rng.Intn(len(e.Active))], " (no group had a leader)"
		}
		l := leaders[cands[e.Rng.Intn(len(cands))]]
		var led []string
		for g, o := range leaders {
			if o == l {
				led = append(led, fmt.Sprint(g))
			}
		}
		return l, " (leader of group " + strings.Join(led, ",") + ")"
	}
	if l := e.C.Leader(ctx); l != nil {
		if e.active(l) {
			return l, ""
		}
	}
	return e.Active[e.Rng.Intn(len(e.Active))], ""
}

func (e *Env) active(n *control.Node) bool {
	for _, a := range e.Active {
		if a == n {
			return true
		}
	}
	return false
}

func (e *Env) shuffled() []*control.Node {
	out := append([]*control.Node(nil), e.Active...)
	e.Rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// targets picks the nodes a process fault hits.
func (e *Env) targets(ctx context.Context, which string) []*control.Node {
	ts, _ := e.targetsNote(ctx, which)
	return ts
}

// targetsNote is targets and, for the leader, the groups it leads.
func (e *Env) targetsNote(ctx context.Context, which string) ([]*control.Node, string) {
	nodes := e.shuffled()
	n := len(nodes)
	switch which {
	case "one":
		return nodes[:1], ""
	case "leader":
		l, note := e.leaderNote(ctx)
		return []*control.Node{l}, note
	case "minority":
		return nodes[:(n-1)/2], ""
	case "majority":
		return nodes[:n/2+1], ""
	}
	return nodes, ""
}

// Families lists the fault families in the order the short schedule runs
// them.
var Families = []string{"partition", "kill", "pause", "net", "clock", "membership", "move", "crash", "compound", "workerd"}

// All returns every fault.
func All() []Fault {
	var out []Fault
	for _, shape := range []string{"isolate-one", "isolate-leader", "majority-minority", "majorities-ring", "bridge"} {
		out = append(out, Fault{Family: "partition", Name: shape, Inject: partition(shape)})
	}
	for _, which := range []string{"one", "leader", "minority", "majority", "all"} {
		out = append(out, Fault{Family: "kill", Name: which, Inject: kill(which)})
		out = append(out, Fault{Family: "pause", Name: which, Inject: pause(which)})
	}
	out = append(out,
		Fault{Family: "net", Name: "loss", Inject: netLoss},
		Fault{Family: "net", Name: "dup", Inject: netDup},
		Fault{Family: "net", Name: "slow", Inject: netSlow},
		Fault{Family: "net", Name: "delay", Inject: netDelay},
		Fault{Family: "clock", Name: "offset-leader", Inject: clock(true)},
		Fault{Family: "clock", Name: "offset-one", Inject: clock(false)},
		Fault{Family: "membership", Name: "replace", Inject: membership},
		Fault{Family: "compound", Name: "pause-kill", Exclusive: true, Inject: compound},
		Fault{Family: "move", Name: "queue", Inject: moveQueue},
	)
	out = append(out,
		Fault{Family: "workerd", Name: "kill-one", Inject: killWorkerd(false)},
		Fault{Family: "workerd", Name: "kill-all", Inject: killWorkerd(true)})
	out = append(out, Fault{Family: "corrupt", Name: "bitflip-log", Exclusive: true, Optional: true, Inject: bitflip})
	for _, fp := range []string{"commit-before-reply", "lease-before-reply", "before-apply", "after-apply", "snapshot-persist", "worker-result-before-ack"} {
		out = append(out, Fault{Family: "crash", Name: fp, Exclusive: true, Inject: crash(fp)})
	}
	return out
}

// Select returns the faults named by spec: "all", or a comma list of
// families ("partition,kill") and family/name ids ("crash/snapshot-persist").
func Select(spec string) ([]Fault, error) {
	all := All()
	if spec == "" || spec == "all" {
		var out []Fault
		for _, f := range all {
			if !f.Optional {
				out = append(out, f)
			}
		}
		return out, nil
	}
	var out []Fault
	for _, want := range strings.Split(spec, ",") {
		want = strings.TrimSpace(want)
		found := false
		for _, f := range all {
			if f.Family == want || f.ID() == want {
				out = append(out, f)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown nemesis %q (families: %s)", want, strings.Join(Families, ", "))
		}
	}
	return out, nil
}

// partitionGrudge computes who drops whom (inbound) for a shape over the
// active nodes in a random order.
func partitionGrudge(shape string, nodes []*control.Node, leader *control.Node) (map[*control.Node][]*control.Node, string) {
	g := map[*control.Node][]*control.Node{}
	n := len(nodes)
	cutBoth := func(a, b []*control.Node) {
		for _, x := range a {
			for _, y := range b {
				g[x] = append(g[x], y)
				g[y] = append(g[y], x)
			}
		}
	}
	switch shape {
	case "isolate-one", "isolate-leader":
		x := nodes[0]
		if shape == "isolate-leader" && leader != nil {
			x = leader
		}
		var rest []*control.Node
		for _, o := range nodes {
			if o != x {
				rest = append(rest, o)
			}
		}
		cutBoth([]*control.Node{x}, rest)
		return g, ids([]*control.Node{x}) + " | " + ids(rest)
	case "majority-minority":
		k := (n - 1) / 2
		cutBoth(nodes[:k], nodes[k:])
		return g, ids(nodes[:k]) + " | " + ids(nodes[k:])
	case "bridge":
		// Two halves and one node that sees both.
		h := (n - 1) / 2
		a, bridge, b := nodes[:h], nodes[h], nodes[h+1:]
		cutBoth(a, b)
		return g, ids(a) + " | " + ids(b) + " bridged by " + bridge.ID
	case "majorities-ring":
		// Each node sees a majority, every node a different one. With 5
		// nodes: ring neighbours only (symmetric). With 3: each node hears
		// only its successor (asymmetric, as in Jepsen).
		var desc []string
		for i, x := range nodes {
			var sees []*control.Node
			for j, y := range nodes {
				d := (j - i + n) % n
				ok := false
				if n >= 5 {
					ok = d <= (n/2+1)/2 || n-d <= (n/2+1)/2
				} else {
					ok = d == 1
				}
				if j == i {
					continue
				}
				if ok {
					sees = append(sees, y)
				} else {
					g[x] = append(g[x], y)
				}
			}
			desc = append(desc, x.ID+" hears "+ids(sees))
		}
		return g, strings.Join(desc, "; ")
	}
	return g, ""
}

func partition(shape string) func(context.Context, *Env) (string, Heal, error) {
	return func(ctx context.Context, e *Env) (string, Heal, error) {
		nodes := e.shuffled()
		l, note := e.leaderNote(ctx)
		g, desc := partitionGrudge(shape, nodes, l)
		if shape == "isolate-leader" {
			desc += note
		}
		heal := func(context.Context) error {
			var errs []string
			for _, n := range e.C.Nodes {
				if err := e.C.Net.Cut(n.Index, nil); err != nil {
					errs = append(errs, err.Error())
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("%s", strings.Join(errs, "; "))
			}
			return nil
		}
		for _, n := range nodes {
			var peers []int
			for _, p := range g[n] {
				peers = append(peers, p.Index)
			}
			sort.Ints(peers)
			if err := e.C.Net.Cut(n.Index, peers); err != nil {
				return desc, heal, err
			}
		}
		return desc, heal, nil
	}
}

func kill(which string) func(context.Context, *Env) (string, Heal, error) {
	return func(ctx context.Context, e *Env) (string, Heal, error) {
		ts, note := e.targetsNote(ctx, which)
		for _, n := range ts {
			e.C.Kill(n)
		}
		return "killed " + ids(ts) + note, func(context.Context) error {
			var errs []string
			for _, n := range ts {
				if err := e.C.Start(n); err != nil {
					errs = append(errs, err.Error())
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("%s", strings.Join(errs, "; "))
			}
			return nil
		}, nil
	}
}

func pause(which string) func(context.Context, *Env) (string, Heal, error) {
	return func(ctx context.Context, e *Env) (string, Heal, error) {
		ts, note := e.targetsNote(ctx, which)
		for _, n := range ts {
			e.C.Pause(n)
		}
		return "paused " + ids(ts) + note, func(context.Context) error {
			for _, n := range ts {
				e.C.Resume(n)
			}
			return nil
		}, nil
	}
}

func healNet(e *Env, nodes []*control.Node) Heal {
	return func(context.Context) error {
		var errs []string
		for _, n := range nodes {
			if err := joinErr(e.C.Net.Loss(n.Index, 0), e.C.Net.Duplicate(n.Index, nil, 0), e.C.Net.Slow(n.Index, "", ""), e.C.Net.Delay(n.Index, "", 0, 0)); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
}

func joinErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func netLoss(_ context.Context, e *Env) (string, Heal, error) {
	p := 0.05 + 0.15*e.Rng.Float64()
	for _, n := range e.Active {
		if err := e.C.Net.Loss(n.Index, p); err != nil {
			return "", healNet(e, e.Active), err
		}
	}
	return fmt.Sprintf("inbound loss %.0f%% on %s", 100*p, ids(e.Active)), healNet(e, e.Active), nil
}

func netDup(_ context.Context, e *Env) (string, Heal, error) {
	p := 0.05 + 0.25*e.Rng.Float64()
	for _, n := range e.Active {
		var peers []int
		for _, o := range e.C.Nodes {
			if o != n {
				peers = append(peers, o.Index)
			}
		}
		if err := e.C.Net.Duplicate(n.Index, peers, p); err != nil {
			return "", healNet(e, e.Active), err
		}
	}
	return fmt.Sprintf("duplicate %.0f%% of packets on %s", 100*p, ids(e.Active)), healNet(e, e.Active), nil
}

func netSlow(ctx context.Context, e *Env) (string, Heal, error) {
	ts := e.targets(ctx, []string{"one", "leader", "all"}[e.Rng.Intn(3)])
	rate := []string{"128kbit", "512kbit", "2mbit"}[e.Rng.Intn(3)]
	for _, n := range ts {
		if err := e.C.Net.Slow(n.Index, rate, "400ms"); err != nil {
			return "", healNet(e, ts), err
		}
	}
	return fmt.Sprintf("outbound limited to %s (queueing up to 400ms) on %s", rate, ids(ts)), healNet(e, ts), nil
}

// netDelay holds every packet the targets send for a delay with jitter
// (an NFQUEUE delayer per node: this kernel has no netem).
func netDelay(ctx context.Context, e *Env) (string, Heal, error) {
	ts := e.targets(ctx, []string{"one", "leader", "all"}[e.Rng.Intn(3)])
	d := []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond}[e.Rng.Intn(4)]
	for _, n := range ts {
		if err := e.C.Net.Delay(n.Index, e.Self, d, d/2); err != nil {
			return "", healNet(e, ts), err
		}
	}
	return fmt.Sprintf("outbound packets delayed %s ± %s on %s", d, d/2, ids(ts)), healNet(e, ts), nil
}

func clock(leader bool) func(context.Context, *Env) (string, Heal, error) {
	return func(ctx context.Context, e *Env) (string, Heal, error) {
		n := e.Active[e.Rng.Intn(len(e.Active))]
		note := ""
		if leader {
			n, note = e.leaderNote(ctx)
		}
		// Forward offsets stamp lease deadlines that far into the future
		// for the next leader: a lease whose holder died then lasts the
		// offset longer. Bounded so the drain still sees such jobs again.
		offsets := []time.Duration{-time.Minute, -10 * time.Second, -2 * time.Second, 2 * time.Second, 10 * time.Second, time.Minute}
		d := offsets[e.Rng.Intn(len(offsets))]
		err := e.C.SetClock(n, d)
		return fmt.Sprintf("clock of %s%s offset by %s", n.ID, note, d), func(context.Context) error { return e.C.SetClock(n, 0) }, err
	}
}

// membership joins a spare as a voter, then removes one of the others
// (the leader a third of the time), kills and wipes it: it becomes the
// next spare. Voters never drop below the starting count minus zero: the
// join comes first.
func membership(ctx context.Context, e *Env) (string, Heal, error) {
	if len(e.Spares) == 0 {
		return "no spare node", noHeal, nil
	}
	spare := e.Spares[0]
	if err := e.C.Start(spare); err != nil {
		return "", noHeal, err
	}
	desc := "joined " + spare.ID
	if !waitMember(ctx, e, spare.ID, true, 20*time.Second) {
		e.reconcile(ctx)
		return desc + " (join did not complete)", noHeal, nil
	}
	victim := e.Active[e.Rng.Intn(len(e.Active))]
	if e.Rng.Intn(3) == 0 {
		victim = e.leader(ctx)
	}
	if err := e.C.RemoveMember(ctx, victim.ID); err != nil {
		e.reconcile(ctx)
		return desc + ", remove " + victim.ID + " failed: " + err.Error(), noHeal, nil
	}
	waitMember(ctx, e, victim.ID, false, 10*time.Second)
	e.reconcile(ctx)
	return desc + ", removed and wiped " + victim.ID, noHeal, nil
}

func waitMember(ctx context.Context, e *Env, id string, want bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if ms, err := e.C.Members(ctx); err == nil {
			has := false
			for _, m := range ms {
				has = has || m == id
			}
			if has == want {
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// reconcile makes Active the leader's voters and Spares the rest; a
// non-member that runs is killed and wiped (it was removed, or its join
// did not complete).
func (e *Env) reconcile(ctx context.Context) {
	var ms []string
	var err error
	for i := 0; i < 50; i++ {
		if ms, err = e.C.Members(ctx); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		e.Log.Warn("membership unknown; keeping the last view", "err", err)
		return
	}
	member := map[string]bool{}
	for _, m := range ms {
		member[m] = true
	}
	e.Active, e.Spares = nil, nil
	for _, n := range e.C.Nodes {
		if member[n.ID] {
			e.Active = append(e.Active, n)
			continue
		}
		if n.Running() {
			e.C.Kill(n)
		}
		if err := e.C.Wipe(n); err != nil {
			e.Log.Warn("wipe", "node", n.ID, "err", err)
		}
		e.Spares = append(e.Spares, n)
	}
}

// crash arms a crash point and waits for it to fire; the heal disarms it
// and restarts whatever died. worker-result-before-ack is the worker-side
// point: the next few workers drop their job after writing its result.
func crash(fp string) func(context.Context, *Env) (string, Heal, error) {
	return func(ctx context.Context, e *Env) (string, Heal, error) {
		if fp == "worker-result-before-ack" {
			e.W.CrashAfterStore.Store(5)
			return "next 5 workers crash after storing the result", func(context.Context) error {
				e.W.CrashAfterStore.Store(0)
				return nil
			}, nil
		}
		var ts []*control.Node
		note := ""
		switch fp {
		case "commit-before-reply", "lease-before-reply":
			var l *control.Node
			l, note = e.leaderNote(ctx)
			ts = []*control.Node{l}
		case "snapshot-persist":
			ts = e.Active
		default:
			ts = e.targets(ctx, "one")
		}
		for _, n := range ts {
			if err := e.C.SetFailpoints(n, fp); err != nil {
				return "", noHeal, err
			}
		}
		deadline := time.Now().Add(15 * time.Second)
		var died []*control.Node
		for time.Now().Before(deadline) && len(died) == 0 && ctx.Err() == nil {
			for _, n := range ts {
				if !n.Running() {
					died = append(died, n)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, n := range ts {
			_ = e.C.SetFailpoints(n)
		}
		desc := fmt.Sprintf("armed %s on %s%s; fired on [%s]", fp, ids(ts), note, ids(died))
		return desc, func(context.Context) error {
			for _, n := range ts {
				if err := e.C.Start(n); err != nil {
					return err
				}
			}
			return nil
		}, nil
	}
}

// killWorkerd SIGKILLs one or every workerd process (whatever they were
// doing: a fetch, the job, the result write, the ack); the heal restarts
// them.
func killWorkerd(all bool) func(context.Context, *Env) (string, Heal, error) {
	return func(_ context.Context, e *Env) (string, Heal, error) {
		ws := e.C.Workerds
		if len(ws) == 0 {
			return "no workerd running", noHeal, nil
		}
		if !all {
			i := e.Rng.Intn(len(ws))
			ws = ws[i : i+1]
		}
		var names []string
		for _, w := range ws {
			e.C.KillWorkerd(w)
			names = append(names, w.ID)
		}
		return "killed " + strings.Join(names, ","), func(context.Context) error {
			for _, w := range ws {
				if err := e.C.StartWorkerd(w); err != nil {
					return err
				}
			}
			return nil
		}, nil
	}
}

// bitflip kills one node, flips a bit in one of the last command entries
// of its Raft log, and restarts it: bit rot in a minority's data files.
func bitflip(_ context.Context, e *Env) (string, Heal, error) {
	n := e.Active[e.Rng.Intn(len(e.Active))]
	e.C.Kill(n)
	desc, err := e.C.FlipLogBit(n, e.Rng)
	if serr := e.C.Start(n); err == nil {
		err = serr
	}
	return n.ID + ": " + desc, noHeal, err
}

// compound is the sequence from the NATS analysis: pause a minority, kill
// another node, pause the rest and resume the first, restart the killed
// one; the heal resumes everyone.
func compound(ctx context.Context, e *Env) (string, Heal, error) {
	nodes := e.shuffled()
	n := len(nodes)
	k := (n - 1) / 2
	first, killed, rest := nodes[:k], nodes[k], nodes[k+1:]
	step := func() { time.Sleep(2 * time.Second) }
	for _, x := range first {
		e.C.Pause(x)
	}
	step()
	e.C.Kill(killed)
	step()
	for _, x := range rest {
		e.C.Pause(x)
	}
	for _, x := range first {
		e.C.Resume(x)
	}
	step()
	err := e.C.Start(killed)
	desc := fmt.Sprintf("paused %s, killed %s, paused %s and resumed %s, restarted %s", ids(first), killed.ID, ids(rest), ids(first), killed.ID)
	return desc, func(context.Context) error {
		for _, x := range nodes {
			e.C.Resume(x)
		}
		return nil
	}, err
}

// HealAll undoes everything any fault may have left: links, clocks, crash
// points, paused and dead members.
func (e *Env) HealAll(ctx context.Context) {
	for _, n := range e.C.Nodes {
		if err := e.C.Net.HealNode(n.Index); err != nil {
			e.Log.Warn("heal network", "node", n.ID, "err", err)
		}
		_ = e.C.SetClock(n, 0)
		_ = e.C.SetFailpoints(n)
		e.C.Resume(n)
	}
	e.W.CrashAfterStore.Store(0)
	for _, w := range e.C.Workerds {
		if err := e.C.StartWorkerd(w); err != nil {
			e.Log.Warn("restart workerd", "workerd", w.ID, "err", err)
		}
	}
	for _, n := range e.Active {
		if !n.Running() {
			if err := e.C.Start(n); err != nil {
				e.Log.Warn("restart", "node", n.ID, "err", err)
			}
		}
	}
}
