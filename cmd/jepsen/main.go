// Command jepsen runs raftq's Jepsen-style test: a real brokerd cluster
// (each node a process in its own network namespace) and a real svcd, a
// workload of producers, workers, zombies and readers, a nemesis that
// injects faults on a schedule, then heal, drain, and the checkers. It
// writes jepsen/store/<run>/ (history.jsonl, results.json, index.html, node
// logs) and exits non-zero when any checker is invalid.
//
//	jepsen run --nodes 3 --time-limit 5m --rate 60 --nemesis all --seed 7
//	jepsen run --schedule short            # every fault once (make jepsen-short)
//	jepsen run --groups 3 --schedule short # 3 Raft groups, one queue each (make jepsen-groups)
//	jepsen run --expect-invalid fencing    # the seeded-bug build (make jepsen-bug)
//	jepsen check jepsen/store/latest       # re-check a stored run
//
// It must run as root (namespaces, iptables, tc); scripts/jepsen-deps.sh
// installs iproute2 and iptables when they are missing.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/version"
	"github.com/raftq/raftq/jepsen/checker"
	"github.com/raftq/raftq/jepsen/control"
	"github.com/raftq/raftq/jepsen/history"
	"github.com/raftq/raftq/jepsen/nemesis"
	"github.com/raftq/raftq/jepsen/report"
	"github.com/raftq/raftq/jepsen/workload"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "jepsen")
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: jepsen run [flags] | jepsen check <run dir>")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(runCmd(os.Args[2:]))
	case "check":
		os.Exit(checkCmd(os.Args[2:]))
	case "delayd":
		os.Exit(delaydCmd(os.Args[2:]))
	default:
		fmt.Fprintf(os.Stderr, "jepsen: unknown command %q (run, check)\n", os.Args[1])
		os.Exit(2)
	}
}

type options struct {
	nodes                       int
	timeLimit, quiet, fault     time.Duration
	rest, drain, lease, work    time.Duration
	rate, readRate, zombie      float64
	producers, workers, readers int
	seed                        int64
	nemesis, schedule, store    string
	bin, name, prefix, subnet   string
	expectInvalid               string
	mix, workerd, groups        int
	replicas                    int
	workerdShare                float64
	bug                         string
}

func runCmd(args []string) int {
	var o options
	fs := flag.NewFlagSet("jepsen run", flag.ContinueOnError)
	fs.IntVar(&o.nodes, "nodes", 3, "voters in the cluster: 3 or 5 (one more node is provisioned as a spare for membership changes)")
	fs.DurationVar(&o.timeLimit, "time-limit", 3*time.Minute, "length of the faulty part of a random schedule")
	fs.DurationVar(&o.quiet, "quiet", 10*time.Second, "fault-free start")
	fs.DurationVar(&o.fault, "fault", 10*time.Second, "how long a fault holds")
	fs.DurationVar(&o.rest, "rest", 5*time.Second, "fault-free period after each heal")
	fs.DurationVar(&o.drain, "drain", 90*time.Second, "longest drain after the final heal")
	fs.DurationVar(&o.lease, "lease", 2*time.Second, "lease duration workers ask for")
	fs.DurationVar(&o.work, "work", 50*time.Millisecond, "longest time a worker spends on a job")
	fs.Float64Var(&o.rate, "rate", 50, "enqueues per second, all producers together")
	fs.Float64Var(&o.readRate, "read-rate", 10, "GetJob calls per second per reader")
	fs.Float64Var(&o.zombie, "zombie", 0.03, "share of deliveries handled by a zombie (acks after its lease ran out)")
	fs.IntVar(&o.producers, "producers", 4, "producers")
	fs.IntVar(&o.workers, "workers", 8, "workers")
	fs.IntVar(&o.readers, "readers", 2, "readers")
	fs.Int64Var(&o.seed, "seed", 0, "random seed (0: from the clock)")
	fs.StringVar(&o.nemesis, "nemesis", "all", "faults: all, none, or a comma list of families ("+strings.Join(nemesis.Families, ", ")+", and the optional corrupt, left out of all) and family/name ids")
	fs.StringVar(&o.schedule, "schedule", "random", "random (mixes until --time-limit) or short (every selected fault once, alone)")
	fs.IntVar(&o.mix, "mix", 2, "most faults active at once in a random schedule")
	fs.StringVar(&o.store, "store", "jepsen/store", "where run directories go")
	fs.StringVar(&o.bin, "bin", "bin/chaos", "directory holding brokerd (built with -tags jepsen) and svcd")
	fs.StringVar(&o.name, "name", "", "run name (default: time, node count and seed)")
	fs.StringVar(&o.prefix, "prefix", "rqj", "prefix of the network namespaces and interfaces")
	fs.StringVar(&o.subnet, "subnet", "198.18.0", "first three octets of the nodes' /24 (exists only inside the harness's namespaces)")
	fs.IntVar(&o.workerd, "workerd", 0, "workerd processes (bin/chaos/workerd) working a second queue of echo jobs; 0: none")
	fs.Float64Var(&o.workerdShare, "workerd-share", 0.25, "share of the values enqueued to the workerd queue")
	fs.IntVar(&o.groups, "groups", envGroups(), "Raft groups every brokerd runs (brokerd --groups); the harness's own queue becomes one queue per group (default: $RAFTQ_GROUPS, else 1)")
	fs.IntVar(&o.replicas, "replicas", 0, "nodes that run each Raft group but group 0 (brokerd --replicas); 0: every node")
	fs.StringVar(&o.bug, "bug", "", "seeded bugs brokerd (built with -tags jepsen,jepsenbug) runs with: stale-ack, early-enqueue-ack, workflow-ignore-deps, move-skip-drain")
	fs.StringVar(&o.expectInvalid, "expect-invalid", "", "exit 0 only if this checker is invalid (for the seeded-bug build)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.nodes != 3 && o.nodes != 5 {
		fmt.Fprintln(os.Stderr, "jepsen: --nodes must be 3 or 5")
		return 2
	}
	if o.groups < 1 || o.groups > placement.MaxGroups {
		fmt.Fprintf(os.Stderr, "jepsen: --groups %d: want 1 to %d\n", o.groups, placement.MaxGroups)
		return 2
	}
	if o.replicas < 0 || o.replicas > o.nodes {
		fmt.Fprintf(os.Stderr, "jepsen: --replicas %d: want 0 (every node) to --nodes\n", o.replicas)
		return 2
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano() % 1e9
	}
	faults, err := nemesis.Select(o.nemesis)
	if err != nil && o.nemesis != "none" {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	if o.nemesis == "none" {
		faults = nil
	}
	if o.workerd == 0 {
		var keep []nemesis.Fault
		for _, f := range faults {
			if f.Family != "workerd" {
				keep = append(keep, f)
			}
		}
		faults = keep
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "jepsen: must run as root (network namespaces, iptables, tc)")
		return 2
	}
	valid, checkers, err := run(o, faults)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 3
	}
	if o.expectInvalid != "" {
		for _, c := range checkers {
			if c.Name == o.expectInvalid && !c.Valid {
				fmt.Printf("expected: checker %s is invalid on this build\n", o.expectInvalid)
				return 0
			}
		}
		fmt.Printf("UNEXPECTED: checker %s did not fail on a build that should fail it\n", o.expectInvalid)
		return 1
	}
	if !valid {
		return 1
	}
	return 0
}

func run(o options, faults []nemesis.Fault) (bool, []checker.Result, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if o.name == "" {
		o.name = fmt.Sprintf("%s-%dn-%s-%d", time.Now().Format("20060102T150405"), o.nodes, o.schedule, o.seed)
		if o.groups > 1 {
			o.name = fmt.Sprintf("%s-%dn%dg-%s-%d", time.Now().Format("20060102T150405"), o.nodes, o.groups, o.schedule, o.seed)
			if o.replicas > 0 {
				o.name = fmt.Sprintf("%s-%dn%dg%dr-%s-%d", time.Now().Format("20060102T150405"), o.nodes, o.groups, o.replicas, o.schedule, o.seed)
			}
		}
	}
	dir, err := filepath.Abs(filepath.Join(o.store, o.name))
	if err != nil {
		return false, nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, nil, err
	}
	latest := filepath.Join(o.store, "latest")
	_ = os.Remove(latest)
	_ = os.Symlink(o.name, latest)
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return false, nil, err
	}
	need := []string{"brokerd", "svcd"}
	if o.workerd > 0 {
		need = append(need, "workerd")
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return false, nil, fmt.Errorf("%s: %w (make jepsen-build builds it)", b, err)
		}
	}
	queues := placement.QueuesPerGroup(mainQueue, o.groups)
	log.Info("jepsen run", "dir", dir, "nodes", o.nodes, "groups", o.groups, "queues", queues, "seed", o.seed, "schedule", o.schedule, "faults", len(faults), "bug", o.bug)
	// 1 MiB WAL segments: Raft compacts a WAL by whole segments, so with
	// the 64 MiB default a run's log would never be compacted and lagging
	// nodes would never be sent a snapshot.
	nodeEnv := []string{"RAFTQ_JEPSEN_SNAPSHOT_THRESHOLD=512", "RAFTQ_JEPSEN_SNAPSHOT_INTERVAL=3s", "RAFTQ_JEPSEN_TRAILING_LOGS=256",
		"RAFTQ_RAFT_WAL_SEGMENT_SIZE=1048576",
		// Consistency checks during the run, under every fault.
		"RAFTQ_CONSISTENCY_CHECK_INTERVAL=10s"}
	if o.bug != "" {
		nodeEnv = append(nodeEnv, "RAFTQ_JEPSEN_BUG="+o.bug)
	}

	rec, err := history.NewRecorder(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return false, nil, err
	}
	cl, err := control.New(control.Options{
		Prefix: o.prefix, Subnet: o.subnet, Nodes: o.nodes, Spares: 1,
		BrokerdBin: filepath.Join(bin, "brokerd"), SvcdBin: filepath.Join(bin, "svcd"), Dir: dir, Logger: log,
		// Frequent snapshots and short trailing logs: crash points inside
		// snapshot persist get hit, lagging nodes need InstallSnapshot.
		Env: nodeEnv, Groups: o.groups, Replicas: o.replicas,
	})
	if err != nil {
		return false, nil, err
	}
	defer cl.Shutdown()
	if err := cl.StartSvcd(); err != nil {
		return false, nil, err
	}
	for _, n := range cl.Nodes[:o.nodes] {
		if err := cl.Start(n); err != nil {
			return false, nil, err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if _, err := cl.WaitLeader(ctx, 60*time.Second); err != nil {
		return false, nil, fmt.Errorf("cluster did not come up: %w (see %s/nodes/*/brokerd.log)", err, dir)
	}

	wcfg := workload.Config{
		Producers: o.producers, Workers: o.workers, Readers: o.readers,
		Rate: o.rate, ReadRate: o.readRate, Queues: queues, Groups: o.groups, Lease: o.lease, Work: o.work,
		ZombieProb: o.zombie, Seed: o.seed,
	}
	if o.workerd > 0 {
		wcfg.WorkerdQueue, wcfg.WorkerdShare = workerdQueue, o.workerdShare
		cl.AddWorkerds(filepath.Join(bin, "workerd"), o.workerd, 4, workerdQueue)
		for _, wd := range cl.Workerds {
			if err := cl.StartWorkerd(wd); err != nil {
				return false, nil, err
			}
		}
	}
	// The cron workload: one @every 1s schedule through every fault
	// (checker.Cron).
	cronCtx, cronCancel := context.WithTimeout(ctx, 60*time.Second)
	firstTick, err := workload.SetupCron(cronCtx, cl.Addrs())
	cronCancel()
	if err != nil {
		return false, nil, err
	}
	w := workload.New(wcfg, rec, cl.Addrs(), cl.SvcdAddr)
	if err := w.Start(); err != nil {
		return false, nil, err
	}
	// The workflow workload: small DAGs submitted atomically and worked
	// through every fault (checker.Workflow).
	wf, err := workload.StartWorkflows(cl.Addrs(), o.seed)
	if err != nil {
		return false, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return false, nil, err
	}
	env := &nemesis.Env{C: cl, W: w, Rec: rec, Rng: rand.New(rand.NewSource(o.seed)), Log: log,
		Active: cl.Nodes[:o.nodes], Spares: cl.Nodes[o.nodes:], Self: self, Groups: o.groups}
	sched := nemesis.Schedule{Quiet: o.quiet, Fault: o.fault, Rest: o.rest, Total: o.timeLimit, Sequential: o.schedule == "short", MaxMix: o.mix}
	if len(faults) > 0 {
		nemesis.Run(ctx, env, sched, faults)
	} else {
		select {
		case <-ctx.Done():
		case <-time.After(o.quiet + o.timeLimit):
		}
	}

	log.Info("healing")
	env.HealAll(context.Background())
	if _, err := cl.WaitLeader(context.Background(), 60*time.Second); err != nil {
		log.Warn("no leader after healing", "err", err)
	}
	workEnd := rec.Now()
	wf.Stop()
	w.StopProducers()
	w.Calm()
	log.Info("draining", "pending", w.Pending())
	remaining := w.Drain(o.drain)
	w.Stop()
	log.Info("drained", "remaining", remaining)

	cron := workload.ReadCron(cl.Addrs(), firstTick, 60*time.Second)
	wfState := wf.Read(60 * time.Second)
	states := finalStates(cl, o.groups, log)
	rows, rowErr := readRows(cl.SvcdAddr)
	if rowErr != nil {
		log.Warn("reading svcd rows", "err", rowErr)
	}
	_ = rec.Close()
	writeJSON(filepath.Join(dir, "nodes.json"), states)
	writeJSON(filepath.Join(dir, "rows.json"), rows)
	writeJSON(filepath.Join(dir, "cron.json"), cron)
	writeJSON(filepath.Join(dir, "workflow.json"), wfState)

	ops := rec.Ops()
	r := &report.Run{
		Name: o.name, Start: rec.StartTime(), Seconds: time.Since(rec.StartTime()).Seconds(),
		Config: map[string]any{
			"nodes": o.nodes, "seed": o.seed, "schedule": o.schedule, "nemesis": o.nemesis, "time_limit": o.timeLimit.String(),
			"rate": o.rate, "producers": o.producers, "workers": o.workers, "readers": o.readers, "lease": o.lease.String(), "zombie": o.zombie,
			"workerd": o.workerd, "bug": o.bug, "groups": o.groups, "queues": queues,
		},
		Extra: map[string]any{"drain_remaining": remaining},
	}
	if remaining > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("the drain ended with %d values enqueued OK not known to be done", remaining))
	}
	valid, results := check(ops, rows, states, cron, wfState, r, workEnd, o.groups)
	if err := report.WriteJSON(dir, r); err != nil {
		log.Warn("results.json", "err", err)
	}
	if err := report.WriteHTML(dir, r, ops); err != nil {
		log.Warn("index.html", "err", err)
	}
	fmt.Print(report.Summary(r))
	fmt.Printf("report: %s/index.html\n", dir)
	return valid, results, nil
}

// The queues: the harness's own workers work mainQueue (every fetch and
// ack in the history); workerd processes work workerdQueue (black boxes:
// svcd's rows say what came out).
const (
	mainQueue    = "jepsen"
	workerdQueue = "jepsen-wd"
)

// check runs every checker and fills r; with several Raft groups, the
// groups checker splits the history by group too.
func check(ops []history.Op, rows []checker.Row, states []checker.NodeState, cron *checker.CronState, wf *checker.WorkflowState, r *report.Run, workEnd int64, groups int) (bool, []checker.Result) {
	var end int64
	for _, op := range ops {
		end = max(end, op.End)
	}
	queueOps := append(append([]history.Op(nil), ops...), checker.BlackBoxDequeues(rows, workerdQueue, end, len(ops))...)
	r.Checkers = []checker.Result{
		checker.Queue(queueOps),
		checker.AckDurability(ops),
		checker.Fencing(ops, checker.RowsExcept(rows, workerdQueue)),
		checker.Linearizable(ops, 5*time.Second),
		checker.Divergence(states),
		checker.Cron(cron),
		checker.Workflow(wf),
	}
	if groups > 1 {
		r.Checkers = append(r.Checkers, checker.Groups(queueOps, rows, groups, workerdQueue, 5*time.Second))
	}
	r.Valid = true
	for _, c := range r.Checkers {
		r.Valid = r.Valid && c.Valid
	}
	r.Stats = report.Compute(ops, workEnd)
	r.Nemesis = report.Intervals(ops)
	return r.Valid, r.Checkers
}

// finalStates waits (up to 30 s) for the members to agree, in every Raft
// group, on an applied index and returns what each reported last (one
// NodeState per member and group).
func finalStates(cl *control.Cluster, groups int, log *slog.Logger) []checker.NodeState {
	ctx := context.Background()
	var out []checker.NodeState
	for i := 0; i < 60; i++ {
		members, err := cl.Members(ctx)
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		out = out[:0]
		same := true
		for g := range max(groups, 1) {
			first := len(out)
			for _, id := range groupMembers(ctx, cl, members, g) {
				n := cl.Node(id)
				s := checker.NodeState{Node: id, Group: uint32(g)}
				if n == nil {
					s.Err = "unknown node"
				} else if st, err := groupStatus(ctx, cl, n, g, groups); err != nil {
					s.Err = err.Error()
				} else {
					s.AppliedIndex, s.Hash = st.AppliedIndex, st.StateHash
				}
				if s.Err != "" || (len(out) > first && (s.AppliedIndex != out[first].AppliedIndex || s.Hash != out[first].Hash)) {
					same = false
				}
				out = append(out, s)
			}
		}
		if same && len(out) > 0 {
			return out
		}
		time.Sleep(500 * time.Millisecond)
	}
	log.Warn("members did not converge", "states", out)
	return out
}

// groupMembers are the nodes whose replicas of group g must agree: the
// cluster's members, or, with groups on some of the nodes (--replicas),
// the members a node's status lists for g (a node that does not run g
// would answer with its leader's state).
func groupMembers(ctx context.Context, cl *control.Cluster, members []string, g int) []string {
	if g == 0 {
		return members
	}
	for _, id := range members {
		n := cl.Node(id)
		if n == nil {
			continue
		}
		st, err := cl.Status(ctx, n)
		if err != nil {
			continue
		}
		for _, gs := range st.GetGroups() {
			if int(gs.GetGroup()) != g || len(gs.GetMembers()) == 0 {
				continue
			}
			var out []string
			for _, m := range gs.GetMembers() {
				out = append(out, m.GetNodeId())
			}
			return out
		}
		return members // no groups listed: every node runs every group
	}
	return members
}

// groupStatus is n's status with its state hash for group g (the plain
// status on a one-group cluster, as before groups).
func groupStatus(ctx context.Context, cl *control.Cluster, n *control.Node, g, groups int) (*raftqv1.StatusResponse, error) {
	if groups > 1 {
		return cl.GroupStatusWithHash(ctx, n, uint32(g))
	}
	return cl.StatusWithHash(ctx, n)
}

// readRows reads every result row svcd holds.
func readRows(addr string) ([]checker.Row, error) {
	c, err := results.Dial(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rows := []checker.Row{}
	cursor := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := c.ListResults(ctx, results.ListOptions{PageSize: 1000, Cursor: cursor, IncludeOutput: true})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, r := range p.Results {
			rows = append(rows, checker.Row{JobID: r.JobID, Token: r.LeaseToken, Status: string(r.Status), Queue: r.Queue, Output: string(r.Output)})
		}
		if p.NextCursor == "" {
			return rows, nil
		}
		cursor = p.NextCursor
	}
}

func writeJSON(path string, v any) {
	b, err := json.MarshalIndent(v, "", " ")
	if err == nil {
		_ = os.WriteFile(path, b, 0o644)
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// checkCmd re-checks a stored run from its history, rows and node states.
func checkCmd(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: jepsen check <run dir>")
		return 2
	}
	dir := args[0]
	ops, err := history.Load(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen:", err)
		return 2
	}
	var rows []checker.Row
	var states []checker.NodeState
	if err := readJSON(filepath.Join(dir, "rows.json"), &rows); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "jepsen: rows.json:", err)
	}
	if err := readJSON(filepath.Join(dir, "nodes.json"), &states); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "jepsen: nodes.json:", err)
	}
	var cron *checker.CronState
	if err := readJSON(filepath.Join(dir, "cron.json"), &cron); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "jepsen: cron.json:", err)
	}
	var wf *checker.WorkflowState
	if err := readJSON(filepath.Join(dir, "workflow.json"), &wf); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "jepsen: workflow.json:", err)
	}
	var end int64
	for _, op := range ops {
		if op.Kind == history.Enqueue && op.End > end {
			end = op.End
		}
	}
	// The group count the run was made with (results.json's config; runs
	// from before groups have none: one group).
	var stored struct {
		Config struct {
			Groups int `json:"groups"`
		} `json:"config"`
	}
	if err := readJSON(filepath.Join(dir, "results.json"), &stored); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "jepsen: results.json:", err)
	}
	r := &report.Run{Name: filepath.Base(dir)}
	valid, _ := check(ops, rows, states, cron, wf, r, end, max(stored.Config.Groups, 1))
	fmt.Print(report.Summary(r))
	if !valid {
		return 1
	}
	return 0
}

// delaydCmd is the packet delayer the net/delay fault starts inside a
// node's namespace (see control.RunDelayer); not for direct use.
func delaydCmd(args []string) int {
	fs := flag.NewFlagSet("jepsen delayd", flag.ContinueOnError)
	queue := fs.Uint("queue", 7, "NFQUEUE number")
	delay := fs.Duration("delay", 50*time.Millisecond, "mean delay")
	jitter := fs.Duration("jitter", 0, "uniform jitter around the delay")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := control.RunDelayer(uint16(*queue), *delay, *jitter); err != nil {
		fmt.Fprintln(os.Stderr, "jepsen delayd:", err)
		return 1
	}
	return 0
}

// envGroups is --groups' default: RAFTQ_GROUPS (the variable brokerd
// itself reads for its groups key), so one setting runs the whole harness
// with several groups; 1 when unset or not a number (the flag's check
// then reports a bad count).
func envGroups() int {
	v := os.Getenv("RAFTQ_GROUPS")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0 // refused with the flag's message
	}
	return n
}
