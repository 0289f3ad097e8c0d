package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/adminapi"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The operator's commands: jobs, queues, dead letters, cluster membership
// and leadership, backups. Calls the Go client has no method for go
// through its Do, with the same leader-following retry as every other
// call; brokers forward writes to the leader themselves.

func (g *globals) addrs() []string {
	var out []string
	for _, a := range strings.Split(g.brokers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func (g *globals) run(cmd *cobra.Command, fn func(ctx context.Context, cl *client.Client, p *printer) error) error {
	return g.runFor(cmd, 0, fn)
}

// runFor is run with extra time beyond --timeout (a long-poll's wait).
func (g *globals) runFor(cmd *cobra.Command, extra time.Duration, fn func(ctx context.Context, cl *client.Client, p *printer) error) error {
	p, err := g.printer(cmd.OutOrStdout())
	if err != nil {
		return err
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout+extra)
	defer cancel()
	return fn(ctx, cl, p)
}

func ts(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Local().Format(time.RFC3339)
}

func printJob(p *printer, j *raftqv1.Job) error {
	v := adminapi.JobFromProto(j)
	progress := ""
	if v.Progress != nil {
		progress = v.Progress.Text()
	}
	stc := ""
	if v.StartToCloseSeconds > 0 {
		stc = (time.Duration(v.StartToCloseSeconds * float64(time.Second))).String()
	}
	pairs := [][2]string{
		{"ID", v.ID}, {"QUEUE", v.Queue}, {"TYPE", v.Type}, {"STATE", v.State}, {"CONCURRENCY KEY", v.ConcurrencyKey},
		{"UNIQUE KEY", v.UniqueKey}, {"START BY", ts(v.StartDeadline)}, {"START TO CLOSE", stc}, {"ATTEMPT DEADLINE", ts(v.AttemptDeadline)},
		{"ATTEMPTS", fmt.Sprintf("%d/%d", v.Attempts, v.MaxAttempts)}, {"PRIORITY", strconv.Itoa(int(v.Priority))},
		{"CREATED", ts(v.CreatedAt)}, {"UPDATED", ts(v.UpdatedAt)}, {"RUN AT", ts(v.RunAt)}, {"FINISHED", ts(v.FinishedAt)},
		{"LEASE TOKEN", strconv.FormatUint(v.LeaseToken, 10)}, {"LEASED BY", v.LeasedBy}, {"LEASE DEADLINE", ts(v.LeaseDeadline)},
		{"PROGRESS", progress}, {"LAST ERROR", v.LastError}, {"PAYLOAD", fmt.Sprintf("%d bytes", len(v.Payload))},
	}
	// Workflow rows only for jobs in a workflow, so other jobs print as
	// before.
	if len(v.Parents) > 0 {
		parents := strings.Join(v.Parents, ", ") + " (" + v.DependencyPolicy
		if v.ParentFailed {
			parents += "; a parent failed"
		}
		pairs = append(pairs, [2]string{"PARENTS", parents + ")"}, [2]string{"WAITING ON", strings.Join(v.WaitingOn, ", ")})
	}
	if len(v.Dependants) > 0 {
		pairs = append(pairs, [2]string{"DEPENDANTS", strings.Join(v.Dependants, ", ")})
	}
	return p.kv(v, pairs)
}

func printJobs(p *printer, jobs []*raftqv1.Job, next string) error {
	page := adminapi.JobPage{Jobs: []adminapi.Job{}, NextAfter: next}
	var rows [][]string
	for _, j := range jobs {
		v := adminapi.JobFromProto(j)
		page.Jobs = append(page.Jobs, v)
		rows = append(rows, []string{v.ID, v.Type, v.State, fmt.Sprintf("%d/%d", v.Attempts, v.MaxAttempts), ts(v.UpdatedAt), oneLine(v.LastError, 60)})
	}
	if err := p.print(page, []string{"ID", "TYPE", "STATE", "ATTEMPTS", "UPDATED", "LAST ERROR"}, rows); err != nil {
		return err
	}
	if next != "" && !p.json {
		fmt.Fprintf(p.w, "more: --after %s\n", next)
	}
	return nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-1] + "…"
	}
	return s
}

func consistencyFlag(stale bool) raftqv1.Consistency {
	if stale {
		return raftqv1.Consistency_CONSISTENCY_STALE
	}
	return raftqv1.Consistency_CONSISTENCY_LINEARIZABLE
}

func parseState(s string) (raftqv1.JobState, error) {
	if st, ok := adminapi.ParseState(s); ok {
		return st, nil
	}
	return 0, fmt.Errorf("state %q: want scheduled, ready, leased, succeeded, dead, cancelled or waiting", s)
}

// ---- jobs ----

func jobsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Short: "Inspect, list and cancel jobs"}
	var stale bool
	get := &cobra.Command{
		Use: "get JOB_ID", Short: "Show a job", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				j, err := cl.GetJob(ctx, args[0], consistencyFlag(stale))
				if err != nil {
					return err
				}
				return printJob(p, j)
			})
		},
	}
	get.Flags().BoolVar(&stale, "stale", false, "read whichever broker answers, possibly stale")
	cancelC := &cobra.Command{
		Use: "cancel JOB_ID", Short: "Cancel a job (a leased job's worker learns it on its next extension)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				st, err := cl.CancelJob(ctx, args[0])
				if err != nil {
					return err
				}
				state := adminapi.StateName(st)
				return p.kv(map[string]string{"id": args[0], "state": state}, [][2]string{{"ID", args[0]}, {"STATE", state}})
			})
		},
	}
	var queue, state, after string
	var limit int32
	var lstale bool
	list := &cobra.Command{
		Use: "list --queue Q --state STATE", Short: "List a queue's jobs in one state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := parseState(state)
			if err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				if err := knownQueues(ctx, cl, queue); err != nil {
					return err
				}
				resp, err := cl.ListJobs(ctx, &raftqv1.ListJobsRequest{Queue: queue, State: st, Limit: limit, After: after, Consistency: consistencyFlag(lstale)})
				if err != nil {
					return err
				}
				return printJobs(p, resp.Jobs, resp.NextAfter)
			})
		},
	}
	f := list.Flags()
	f.StringVar(&queue, "queue", "default", "queue name")
	f.StringVar(&state, "state", "ready", "scheduled, ready, leased, succeeded, dead or cancelled")
	f.Int32Var(&limit, "limit", 100, "most jobs to list (at most 1000)")
	f.StringVar(&after, "after", "", "continue after this job id")
	f.BoolVar(&lstale, "stale", false, "read whichever broker answers, possibly stale")
	_ = list.RegisterFlagCompletionFunc("state", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"scheduled", "ready", "leased", "succeeded", "dead", "cancelled"}, cobra.ShellCompDirectiveNoFileComp
	})
	cmd.AddCommand(get, cancelC, list)
	return cmd
}

// ---- queues ----

func queuesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "queues", Short: "Queue depths; pause and resume"}
	list := &cobra.Command{
		Use: "list [QUEUE...]", Short: "Depth per state, pause flag and oldest ready age of each queue",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				if err := knownQueues(ctx, cl, args...); err != nil {
					return err
				}
				qs, err := cl.QueueStats(ctx, args...)
				if err != nil {
					return err
				}
				c, err := clusterStatus(ctx, cl)
				if err != nil {
					return err
				}
				// The group column only where there are groups, so a
				// one-group cluster's table reads as it always did.
				multi := c.GroupCount > 1
				out := []adminapi.Queue{}
				var rows [][]string
				for _, q := range qs {
					v := adminapi.QueueFromProto(q)
					v.Group = c.QueueGroup(q.Queue)
					out = append(out, v)
					age := "-"
					if q.Ready > 0 {
						age = (time.Duration(v.OldestReadyAgeSeconds * float64(time.Second))).Round(time.Second).String()
					}
					row := []string{q.Queue}
					if multi {
						row = append(row, strconv.FormatUint(uint64(v.Group), 10))
					}
					rows = append(rows, append(row, strconv.FormatBool(q.Paused), i64(q.Scheduled), i64(q.Ready), i64(q.Leased),
						i64(q.Succeeded), i64(q.Dead), i64(q.Cancelled), age))
				}
				header := []string{"QUEUE"}
				if multi {
					header = append(header, "GROUP")
				}
				header = append(header, "PAUSED", "SCHEDULED", "READY", "LEASED", "SUCCEEDED", "DEAD", "CANCELLED", "OLDEST READY")
				return p.print(map[string]any{"queues": out}, header, rows)
			})
		},
	}
	var newQueue bool
	group := &cobra.Command{
		Use: "group QUEUE...", Short: "The Raft group holding each queue, and that group's leader", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, q := range args {
				if strings.TrimSpace(q) == "" {
					return errors.New("an empty queue name")
				}
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				// Placement is computed from the name, so a typo would get
				// an answer too: refuse names the cluster has never seen
				// unless asked where a new queue would go.
				if !newQueue {
					if err := knownQueues(ctx, cl, args...); err != nil {
						return fmt.Errorf("%w (--new to ask where it would be created)", err)
					}
				}
				c, err := clusterStatus(ctx, cl)
				if err != nil {
					return err
				}
				out := []adminapi.QueuePlacement{}
				var rows [][]string
				for _, q := range args {
					pl := c.Placement(q)
					out = append(out, pl)
					rows = append(rows, []string{q, strconv.FormatUint(uint64(pl.Group), 10), orDash(pl.LeaderID), orDash(pl.LeaderAddr)})
				}
				return p.print(map[string]any{"group_count": c.GroupCount, "queues": out}, []string{"QUEUE", "GROUP", "LEADER", "LEADER ADDR"}, rows)
			})
		},
	}
	group.Flags().BoolVar(&newQueue, "new", false, "the queue may not exist yet: show the group it will be created in")
	pause := func(use, short string, paused bool) *cobra.Command {
		var create bool
		c := &cobra.Command{
			Use: use + " QUEUE", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
					if !create {
						if err := knownQueues(ctx, cl, args[0]); err != nil {
							return fmt.Errorf("%w (--create to %s it anyway)", err, use)
						}
					}
					var err error
					if paused {
						err = cl.PauseQueue(ctx, args[0])
					} else {
						err = cl.ResumeQueue(ctx, args[0])
					}
					if err != nil {
						return err
					}
					return p.kv(map[string]any{"queue": args[0], "paused": paused}, [][2]string{{"QUEUE", args[0]}, {"PAUSED", strconv.FormatBool(paused)}})
				})
			},
		}
		c.Flags().BoolVar(&create, "create", false, "the queue may be new (a typo would otherwise "+use+" a queue nobody uses)")
		return c
	}
	var to uint32
	move := &cobra.Command{
		Use: "move QUEUE --to GROUP", Short: "Move a queue to another Raft group (new jobs go there at once; the old group's are served until none is left)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("to") {
				return errors.New("--to GROUP is required")
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				if err := knownQueues(ctx, cl, args[0]); err != nil {
					return err
				}
				pl, err := cl.MoveQueue(ctx, args[0], to)
				if err != nil {
					return err
				}
				return p.kv(placementJSON(pl), placementKV(pl))
			})
		},
	}
	move.Flags().Uint32Var(&to, "to", 0, "the group to move the queue to")
	var parts []uint
	partition := &cobra.Command{
		Use: "partition QUEUE --groups G,G,...", Short: "Spread a queue over several Raft groups, one partition each (once, before producers use keys on it)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(parts) == 0 {
				return errors.New("--groups is required")
			}
			gs := make([]uint32, len(parts))
			for i, g := range parts {
				gs[i] = uint32(g)
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				pl, err := cl.PartitionQueue(ctx, args[0], gs...)
				if err != nil {
					return err
				}
				return p.kv(placementJSON(pl), placementKV(pl))
			})
		},
	}
	partition.Flags().UintSliceVar(&parts, "groups", nil, "the groups to hold a partition each (the queue's own group is added)")
	placements := &cobra.Command{
		Use: "placements", Short: "Queues moved by an operator, and the moves under way", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				pls, err := cl.Placements(ctx)
				if err != nil {
					return err
				}
				out := []map[string]any{}
				var rows [][]string
				for _, pl := range pls {
					out = append(out, placementJSON(pl))
					from := "-"
					if pl.GetPhase() != "done" {
						from = strconv.FormatUint(uint64(pl.GetFromGroup()), 10)
					}
					partitions := "-"
					if len(pl.GetPartitions()) > 0 {
						partitions = fmt.Sprint(pl.GetPartitions())
					}
					rows = append(rows, []string{pl.GetQueue(), strconv.FormatUint(uint64(pl.GetGroup()), 10), from, pl.GetPhase(), i64(pl.GetLeftInFromGroup()), partitions})
				}
				return p.print(map[string]any{"placements": out}, []string{"QUEUE", "GROUP", "FROM GROUP", "PHASE", "LEFT IN FROM GROUP", "PARTITIONS"}, rows)
			})
		},
	}
	cmd.AddCommand(list, group, move, partition, placements, pause("pause", "Stop leasing from a queue (enqueues still accepted)", true), pause("resume", "Resume leasing from a queue", false))
	return cmd
}

// placementJSON is a placement as brokerctl's JSON prints it.
func placementJSON(pl *raftqv1.Placement) map[string]any {
	return map[string]any{"queue": pl.GetQueue(), "group": pl.GetGroup(), "from_group": pl.GetFromGroup(),
		"phase": pl.GetPhase(), "left_in_from_group": pl.GetLeftInFromGroup(), "partitions": pl.GetPartitions()}
}

// placementKV is a placement as brokerctl's table prints it.
func placementKV(pl *raftqv1.Placement) [][2]string {
	return [][2]string{{"QUEUE", pl.GetQueue()}, {"GROUP", strconv.FormatUint(uint64(pl.GetGroup()), 10)},
		{"FROM GROUP", strconv.FormatUint(uint64(pl.GetFromGroup()), 10)}, {"PHASE", pl.GetPhase()},
		{"PARTITIONS", fmt.Sprint(pl.GetPartitions())}}
}

// knownQueues refuses queue names the cluster has never seen (no job,
// never paused): the broker answers zeros for any name, so a typo would
// look like an empty queue, and pausing it would create it.
func knownQueues(ctx context.Context, cl *client.Client, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	all, err := cl.QueueStats(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, q := range all {
		known[q.Queue] = true
	}
	for _, n := range names {
		if !known[n] {
			return fmt.Errorf("unknown queue %q (no job was ever enqueued to it)", n)
		}
	}
	return nil
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clusterStatus is the cluster as the first broker the client reaches
// sees it: a Status that names no group, so with several groups it has
// every group's leader.
func clusterStatus(ctx context.Context, cl *client.Client) (adminapi.Cluster, error) {
	var st *raftqv1.StatusResponse
	if err := cl.Do(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		st, err = raftqv1.NewClusterClient(cc).Status(ctx, &raftqv1.StatusRequest{})
		return err
	}); err != nil {
		return adminapi.Cluster{}, err
	}
	return adminapi.ClusterFromProto(st), nil
}

// ---- dead letters ----

func dlqCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "Dead letters: list, inspect, redrive, purge"}
	var limit int32
	var after string
	list := &cobra.Command{
		Use: "list QUEUE", Short: "List a queue's dead jobs", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				if err := knownQueues(ctx, cl, args[0]); err != nil {
					return err
				}
				resp, err := cl.ListJobs(ctx, &raftqv1.ListJobsRequest{Queue: args[0], State: raftqv1.JobState_JOB_STATE_DEAD, Limit: limit, After: after})
				if err != nil {
					return err
				}
				return printJobs(p, resp.Jobs, resp.NextAfter)
			})
		},
	}
	list.Flags().Int32Var(&limit, "limit", 100, "most jobs to list (at most 1000)")
	list.Flags().StringVar(&after, "after", "", "continue after this job id")
	inspect := &cobra.Command{
		Use: "inspect QUEUE JOB_ID", Short: "Show one dead job, with its last error", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				j, err := cl.GetJob(ctx, args[1], raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
				if err != nil {
					return err
				}
				if j.Queue != args[0] || j.State != raftqv1.JobState_JOB_STATE_DEAD {
					return fmt.Errorf("job %s is not a dead letter of %s (it is %s in %s)", j.Id, args[0], adminapi.StateName(j.State), j.Queue)
				}
				return printJob(p, j)
			})
		},
	}
	selection := func(c *cobra.Command, all *bool, lim *int32) {
		c.Flags().BoolVar(all, "all", false, "every dead job of the queue (up to --limit), instead of the listed ones")
		c.Flags().Int32Var(lim, "limit", 0, "with --all: at most this many (default 1000)")
	}
	checkSel := func(ids []string, all bool) error {
		if len(ids) == 0 && !all {
			return errors.New("name the jobs, or give --all")
		}
		if len(ids) > 0 && all {
			return errors.New("give job ids or --all, not both")
		}
		return nil
	}
	printIDs := func(p *printer, verb string, ids []string) error {
		if ids == nil {
			ids = []string{}
		}
		rows := make([][]string, len(ids))
		for i, id := range ids {
			rows[i] = []string{id}
		}
		if err := p.print(map[string]any{"job_ids": ids}, []string{strings.ToUpper(verb)}, rows); err != nil {
			return err
		}
		if !p.json {
			fmt.Fprintf(p.w, "%s %d job(s)\n", verb, len(ids))
		}
		return nil
	}
	var rAll bool
	var rLimit int32
	redrive := &cobra.Command{
		Use: "redrive QUEUE [JOB_ID...]", Short: "Move dead jobs back to ready with fresh attempts", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSel(args[1:], rAll); err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				ids, err := cl.Redrive(ctx, args[0], args[1:], rLimit)
				if err != nil {
					return err
				}
				return printIDs(p, "redriven", ids)
			})
		},
	}
	selection(redrive, &rAll, &rLimit)
	var pAll bool
	var pLimit int32
	purge := &cobra.Command{
		Use: "purge QUEUE [JOB_ID...]", Short: "Delete dead jobs for good", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkSel(args[1:], pAll); err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				var resp *raftqv1.PurgeDeadResponse
				err := cl.Do(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
					resp, err = raftqv1.NewAdminClient(cc).PurgeDead(ctx, &raftqv1.PurgeDeadRequest{Queue: args[0], JobIds: args[1:], Limit: pLimit})
					return err
				})
				if err != nil {
					return err
				}
				return printIDs(p, "purged", resp.JobIds)
			})
		},
	}
	selection(purge, &pAll, &pLimit)
	cmd.AddCommand(list, inspect, redrive, purge)
	return cmd
}

// ---- cluster ----

func clusterCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster status, membership and leadership"}
	statusC := &cobra.Command{
		Use: "status", Short: "Each broker's view: Raft state, leader, term, indexes, state hash; and of every Raft group", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				type view struct {
					Addr  string            `json:"addr"`
					Error string            `json:"error,omitempty"`
					Node  *adminapi.Cluster `json:"node,omitempty"`
				}
				var views []view
				var rows, grows [][]string
				for _, a := range g.addrs() {
					sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					st, err := cl.StatusWithHash(sctx, a)
					cancel()
					if err != nil {
						views = append(views, view{Addr: a, Error: err.Error()})
						rows = append(rows, []string{a, "unreachable", "", "", "", "", "", ""})
						continue
					}
					c := adminapi.ClusterFromProto(st)
					views = append(views, view{Addr: a, Node: &c})
					hash := st.StateHash
					if len(hash) > 12 {
						hash = hash[:12]
					}
					rows = append(rows, []string{a, st.NodeId, st.State, st.LeaderId, strconv.FormatUint(st.Term, 10),
						strconv.FormatUint(st.CommitIndex, 10), strconv.FormatUint(st.AppliedIndex, 10), hash})
					for _, gr := range c.Groups {
						grows = append(grows, []string{st.NodeId, strconv.FormatUint(uint64(gr.Group), 10), gr.State, orDash(gr.LeaderID),
							orDash(gr.LeaderAddr), strconv.FormatUint(gr.Term, 10), strconv.FormatUint(gr.AppliedIndex, 10), memberList(gr.Members)})
					}
				}
				if err := p.print(views, []string{"ADDR", "NODE", "STATE", "LEADER", "TERM", "COMMIT", "APPLIED", "STATE HASH"}, rows); err != nil || p.json || len(grows) == 0 {
					// JSON: the groups are in each node's view.
					return err
				}
				// Several Raft groups: the rows above are group 0's; each
				// node's view of every group follows.
				fmt.Fprintln(p.w)
				return p.print(nil, []string{"NODE", "GROUP", "STATE", "LEADER", "LEADER ADDR", "TERM", "APPLIED", "MEMBERS"}, grows)
			})
		},
	}
	members := &cobra.Command{
		Use: "members", Short: "The Raft configuration, as the first reachable broker knows it", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				var st *raftqv1.StatusResponse
				if err := cl.Do(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
					st, err = raftqv1.NewClusterClient(cc).Status(ctx, &raftqv1.StatusRequest{})
					return err
				}); err != nil {
					return err
				}
				var rows [][]string
				for _, m := range st.Members {
					rows = append(rows, []string{m.NodeId, strconv.FormatBool(m.Leader), strconv.FormatBool(m.Voter), m.RaftAddr, m.GrpcAddr})
				}
				return p.print(map[string]any{"members": adminapi.MembersFromProto(st.Members)}, []string{"NODE", "LEADER", "VOTER", "RAFT ADDR", "GRPC ADDR"}, rows)
			})
		},
	}
	simple := func(use, short string, args cobra.PositionalArgs, call func(ctx context.Context, cc *grpc.ClientConn, args []string) (map[string]string, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: args,
			RunE: func(cmd *cobra.Command, a []string) error {
				return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
					var out map[string]string
					if err := cl.Do(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
						out, err = call(ctx, cc, a)
						return err
					}); err != nil {
						return err
					}
					var pairs [][2]string
					for _, k := range []string{"added", "removed", "leader_id"} {
						if v, ok := out[k]; ok {
							pairs = append(pairs, [2]string{strings.ToUpper(strings.ReplaceAll(k, "_", " ")), v})
						}
					}
					return p.kv(out, pairs)
				})
			},
		}
	}
	add := simple("add NODE_ID RAFT_ADDR GRPC_ADDR", "Add a fresh node (empty data dir, no bootstrap, no join) as a voter", cobra.ExactArgs(3),
		func(ctx context.Context, cc *grpc.ClientConn, a []string) (map[string]string, error) {
			_, err := raftqv1.NewClusterClient(cc).Join(ctx, &raftqv1.JoinRequest{NodeId: a[0], RaftAddr: a[1], GrpcAddr: a[2]})
			return map[string]string{"added": a[0]}, err
		})
	remove := simple("remove NODE_ID", "Remove a member (the last voter is never removed)", cobra.ExactArgs(1),
		func(ctx context.Context, cc *grpc.ClientConn, a []string) (map[string]string, error) {
			_, err := raftqv1.NewClusterClient(cc).Remove(ctx, &raftqv1.RemoveRequest{NodeId: a[0]})
			return map[string]string{"removed": a[0]}, err
		})
	group := -1
	transfer := simple("transfer [NODE_ID]", "Hand leadership (of Raft group --group, default group 0) to NODE_ID (or the most up-to-date follower)", cobra.MaximumNArgs(1),
		func(ctx context.Context, cc *grpc.ClientConn, a []string) (map[string]string, error) {
			ctx = groupHeader(ctx, group)
			req := &raftqv1.TransferLeadershipRequest{}
			if len(a) == 1 {
				req.NodeId = a[0]
			}
			resp, err := raftqv1.NewClusterClient(cc).TransferLeadership(ctx, req)
			if err != nil {
				return nil, err
			}
			return map[string]string{"leader_id": resp.NewLeaderId}, nil
		})
	transfer.Flags().IntVar(&group, "group", -1, "the Raft group whose leadership moves, on a cluster of several (default: group 0)")
	cmd.AddCommand(statusC, members, add, remove, transfer)
	return cmd
}

// memberList is a group's members as a table cell: node ids, the leader
// marked with a star, non-voters with "(non-voter)".
func memberList(ms []adminapi.Member) string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		s := m.NodeID
		if m.Leader {
			s += "*"
		}
		if !m.Voter {
			s += "(non-voter)"
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// ---- snapshots ----

func snapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up and restore the cluster's state"}
	save := &cobra.Command{
		Use: "save FILE", Short: "Save a backup of the leader's state to FILE", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				return saveBackup(ctx, g, cl, p, args[0])
			})
		},
	}
	var yes bool
	restore := &cobra.Command{
		Use: "restore FILE --yes", Short: "Replace the whole cluster's state with a backup (jobs written since are lost)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return errors.New("restore replaces every job in the cluster: add --yes")
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				return restoreBackup(ctx, cl, p, args[0])
			})
		},
	}
	restore.Flags().BoolVar(&yes, "yes", false, "confirm that every job written since the backup may be lost")
	cmd.AddCommand(save, restore)
	return cmd
}

// saveBackup streams the leader's state into file (through a temporary
// file, renamed when complete and synced). A cluster of several Raft
// groups is saved one file per group: file for group 0, file.g<G> for
// group G, each from its group's leader.
func saveBackup(ctx context.Context, g *globals, cl *client.Client, p *printer, file string) error {
	// A linearizable read first: only a leader that has applied
	// every acknowledged write (its Barrier done) answers it. A
	// leader elected a moment ago may not have yet, and the Snapshot
	// RPC streams whatever its FSM holds.
	if _, err := cl.QueueStats(ctx); err != nil {
		return err
	}
	// The leader holds the freshest state: ask any broker who leads.
	var st *raftqv1.StatusResponse
	for _, a := range g.addrs() {
		sctx, c := context.WithTimeout(ctx, 3*time.Second)
		s, err := cl.Status(sctx, a)
		c()
		if err == nil && s.LeaderAddr != "" {
			st = s
			break
		}
	}
	if st == nil {
		return errors.New("no broker knows a leader")
	}
	if st.GetGroupCount() < 2 {
		out, err := saveGroup(ctx, g, st.LeaderAddr, -1, file)
		if err != nil {
			return err
		}
		return p.kv(out, [][2]string{{"FILE", file}, {"BYTES", i64(out["bytes"].(int64))},
			{"APPLIED INDEX", strconv.FormatUint(out["applied_index"].(uint64), 10)}, {"FROM", out["node_id"].(string)}})
	}
	var outs []map[string]any
	var rows [][]string
	for _, gs := range st.GetGroups() {
		if gs.LeaderAddr == "" {
			return fmt.Errorf("group %d has no leader known to %s: try again", gs.Group, st.NodeId)
		}
		f := groupFile(file, gs.Group)
		out, err := saveGroup(ctx, g, gs.LeaderAddr, int(gs.Group), f)
		if err != nil {
			return fmt.Errorf("group %d: %w", gs.Group, err)
		}
		out["group"] = gs.Group
		outs = append(outs, out)
		rows = append(rows, []string{strconv.FormatUint(uint64(gs.Group), 10), f, i64(out["bytes"].(int64)),
			strconv.FormatUint(out["applied_index"].(uint64), 10), out["node_id"].(string)})
	}
	return p.print(outs, []string{"GROUP", "FILE", "BYTES", "APPLIED INDEX", "FROM"}, rows)
}

// groupFile is the backup file of Raft group grp: file itself for group 0.
func groupFile(file string, grp uint32) string {
	if grp == 0 {
		return file
	}
	return fmt.Sprintf("%s.g%d", file, grp)
}

// groupHeader names Raft group grp in ctx's call metadata (none for -1).
func groupHeader(ctx context.Context, grp int) context.Context {
	if grp < 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, placement.Header, strconv.Itoa(grp))
}

// saveGroup streams one group's state (grp -1: the only group) from the
// broker at leader into file.
func saveGroup(ctx context.Context, g *globals, leader string, grp int, file string) (map[string]any, error) {
	cc, err := g.dial(leader)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	stream, err := raftqv1.NewClusterClient(cc).Snapshot(groupHeader(ctx, grp), &raftqv1.SnapshotRequest{})
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".*.partial")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	var n int64
	var index uint64
	var node string
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			tmp.Close()
			return nil, err
		}
		if c.NodeId != "" {
			index, node = c.AppliedIndex, c.NodeId
		}
		if _, err := tmp.Write(c.Data); err != nil {
			tmp.Close()
			return nil, err
		}
		n += int64(len(c.Data))
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return nil, err
	}
	return map[string]any{"file": file, "bytes": n, "applied_index": index, "node_id": node}, nil
}

// restoreBackup streams the backup in file to the cluster (a follower pipes the
// stream to its leader). A try that fails UNAVAILABLE starts again from
// the file's first byte: the leader replaces its state only once the whole
// stream has arrived.
func restoreBackup(ctx context.Context, cl *client.Client, p *printer, file string) error {
	groups := 1
	for _, a := range cl.Addrs() {
		sctx, c := context.WithTimeout(ctx, 3*time.Second)
		st, err := cl.Status(sctx, a)
		c()
		if err == nil {
			groups = max(1, int(st.GetGroupCount()))
			break
		}
	}
	if groups == 1 {
		resp, err := restoreGroup(ctx, cl, -1, file)
		if err != nil {
			return err
		}
		return p.kv(map[string]any{"index": resp.Index, "jobs": resp.Jobs},
			[][2]string{{"RESTORED AT INDEX", strconv.FormatUint(resp.Index, 10)}, {"JOBS", i64(resp.Jobs)}})
	}
	// Several groups: every group's file must be there before any
	// group's state is replaced.
	for grp := 0; grp < groups; grp++ {
		if _, err := os.Stat(groupFile(file, uint32(grp))); err != nil {
			return fmt.Errorf("the cluster runs %d Raft groups and a backup of it is one file per group: %w (nothing was restored)", groups, err)
		}
	}
	if _, err := os.Stat(groupFile(file, uint32(groups))); err == nil {
		return fmt.Errorf("%s exists: this backup has more groups than the cluster's %d (nothing was restored)", groupFile(file, uint32(groups)), groups)
	}
	var outs []map[string]any
	var rows [][]string
	for grp := 0; grp < groups; grp++ {
		f := groupFile(file, uint32(grp))
		resp, err := restoreGroup(ctx, cl, grp, f)
		if err != nil {
			return fmt.Errorf("group %d (groups before it were restored): %w", grp, err)
		}
		outs = append(outs, map[string]any{"group": grp, "file": f, "index": resp.Index, "jobs": resp.Jobs})
		rows = append(rows, []string{strconv.Itoa(grp), f, strconv.FormatUint(resp.Index, 10), i64(resp.Jobs)})
	}
	return p.print(outs, []string{"GROUP", "FILE", "RESTORED AT INDEX", "JOBS"}, rows)
}

// restoreGroup restores one group (grp -1: the only group) from file.
func restoreGroup(ctx context.Context, cl *client.Client, grp int, file string) (*raftqv1.RestoreResponse, error) {
	var resp *raftqv1.RestoreResponse
	err := cl.Do(groupHeader(ctx, grp), func(ctx context.Context, cc *grpc.ClientConn) error {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		stream, err := raftqv1.NewClusterClient(cc).Restore(ctx)
		if err != nil {
			return err
		}
		buf := make([]byte, 256<<10)
		for {
			n, rerr := f.Read(buf)
			if n > 0 {
				if err := stream.Send(&raftqv1.RestoreChunk{Data: append([]byte(nil), buf[:n]...)}); err != nil {
					break // the answer says why
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return rerr
			}
		}
		resp, err = stream.CloseAndRecv()
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
