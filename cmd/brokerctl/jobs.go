package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/adminapi"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
)

// The job's life from a shell: enqueue, fetch, ack, nack, extend, and its
// attempt history from svcd. jobs get/list/cancel are in ops.go.

// Enqueued is one job enqueue made (JSON: {"jobs": [...]}).
type Enqueued struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// readPayload is --payload, or --payload-file (- for stdin): a file has
// no argv size limit (a payload over ~128 KB on the command line fails
// with "argument list too long").
func readPayload(cmd *cobra.Command, payload, file string) ([]byte, error) {
	if file == "" {
		return []byte(payload), nil
	}
	if cmd.Flags().Changed("payload") {
		return nil, errors.New("give --payload or --payload-file, not both")
	}
	if file == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(file)
}

// nonNegative refuses negative durations, which the broker would treat
// as "now" (or its default) instead of what was meant.
func nonNegative(name string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("--%s %s: must not be negative", name, d)
	}
	return nil
}

func enqueueCmd(g *globals) *cobra.Command {
	var spec raftqv1.JobSpec
	var payload, payloadFile, key, runAt, uniqueMode string
	var delay, lease, dedup, backoffInitial, backoffMax, s2s, s2c time.Duration
	var count int
	var dependsOn []string
	var runAnyway, chain bool
	cmd := &cobra.Command{
		Use:   "enqueue",
		Short: "Enqueue a job (or --count copies in one atomic batch); prints the job ids",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for name, d := range map[string]time.Duration{"delay": delay, "lease": lease, "dedup-window": dedup, "backoff-initial": backoffInitial, "backoff-max": backoffMax,
				"schedule-to-start": s2s, "start-to-close": s2c} {
				if err := nonNegative(name, d); err != nil {
					return err
				}
			}
			switch uniqueMode {
			case "", "return":
				spec.UniqueMode = raftqv1.UniqueMode_UNIQUE_MODE_UNSPECIFIED
			case "reject":
				spec.UniqueMode = raftqv1.UniqueMode_UNIQUE_MODE_REJECT
			case "debounce":
				spec.UniqueMode = raftqv1.UniqueMode_UNIQUE_MODE_DEBOUNCE
			default:
				return fmt.Errorf("--unique-mode %q: want return, reject or debounce", uniqueMode)
			}
			if uniqueMode != "" && spec.UniqueKey == "" {
				return errors.New("--unique-mode needs --unique-key")
			}
			if s2s > 0 {
				spec.ScheduleToStart = durationpb.New(s2s)
			}
			if s2c > 0 {
				spec.StartToClose = durationpb.New(s2c)
			}
			if count < 1 {
				return fmt.Errorf("--count %d: must be at least 1", count)
			}
			var at *timestamppb.Timestamp
			if runAt != "" {
				if delay != 0 {
					return errors.New("give --delay or --run-at, not both")
				}
				t, err := time.Parse(time.RFC3339, runAt)
				if err != nil {
					return fmt.Errorf("--run-at %q: want RFC 3339, e.g. 2030-01-02T15:04:05Z: %w", runAt, err)
				}
				at = timestamppb.New(t)
			}
			if dedup > 0 && key == "" {
				return errors.New("--dedup-window needs --key (the idempotency key it deduplicates)")
			}
			body, err := readPayload(cmd, payload, payloadFile)
			if err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				var specs []*raftqv1.JobSpec
				for i := 0; i < count; i++ {
					s := proto.Clone(&spec).(*raftqv1.JobSpec)
					s.Payload = body
					s.RunAt = at
					if key != "" {
						s.IdempotencyKey = key
						if count > 1 {
							s.IdempotencyKey = key + "-" + strconv.Itoa(i)
						}
					}
					if delay > 0 {
						s.Delay = durationpb.New(delay)
					}
					if lease > 0 {
						s.LeaseDuration = durationpb.New(lease)
					}
					if dedup > 0 {
						s.DedupWindow = durationpb.New(dedup)
					}
					if backoffInitial > 0 || backoffMax > 0 {
						s.Retry = &raftqv1.RetryPolicy{}
						if backoffInitial > 0 {
							s.Retry.InitialBackoff = durationpb.New(backoffInitial)
						}
						if backoffMax > 0 {
							s.Retry.MaxBackoff = durationpb.New(backoffMax)
						}
					}
					s.DependsOn = dependsOn
					if runAnyway {
						s.DependencyPolicy = raftqv1.DependencyPolicy_DEPENDENCY_POLICY_RUN_ANYWAY
					}
					specs = append(specs, s)
				}
				if chain {
					specs = client.Chain(specs...)
				}
				res, err := cl.Enqueue(ctx, specs...)
				if err != nil {
					return err
				}
				out := []Enqueued{}
				var rows [][]string
				for _, r := range res {
					out = append(out, Enqueued{ID: r.JobId, Duplicate: r.Duplicate})
					rows = append(rows, []string{r.JobId, strconv.FormatBool(r.Duplicate)})
				}
				return p.print(map[string]any{"jobs": out}, []string{"ID", "DUPLICATE"}, rows)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Queue, "queue", "default", "queue name")
	f.StringVar(&spec.Type, "type", "echo", "job type")
	f.StringVar(&payload, "payload", "", "payload (bytes of the string)")
	f.StringVar(&payloadFile, "payload-file", "", "read the payload from this file (- for stdin)")
	f.Int32Var(&spec.Priority, "priority", 0, "priority (higher first)")
	f.DurationVar(&delay, "delay", 0, "run no earlier than this from now")
	f.StringVar(&runAt, "run-at", "", "run no earlier than this time (RFC 3339)")
	f.Int32Var(&spec.MaxAttempts, "max-attempts", 0, "attempts before dead-lettering (0: broker default)")
	f.DurationVar(&lease, "lease", 0, "lease duration (0: broker default)")
	f.StringVar(&key, "key", "", "idempotency key")
	f.StringVar(&spec.ConcurrencyKey, "concurrency-key", "", "concurrency key (tenant, customer id): fair dispatch across keys and the queue's max_in_flight_per_key")
	f.DurationVar(&dedup, "dedup-window", 0, "how long --key deduplicates (0: broker default)")
	f.DurationVar(&s2s, "schedule-to-start", 0, "dead if no worker has started the job within this long after it is due (0: no timeout)")
	f.DurationVar(&s2c, "start-to-close", 0, "fail an attempt still running this long after its lease began, even if extended (0: no timeout; at least --lease)")
	f.StringVar(&spec.UniqueKey, "unique-key", "", "unique key: no second job with it in the queue while one is not terminal")
	f.StringVar(&uniqueMode, "unique-mode", "", "when --unique-key is held: return (the existing job, default), reject (ALREADY_EXISTS) or debounce (move a delayed job to this run time and payload)")
	f.DurationVar(&backoffInitial, "backoff-initial", 0, "first retry back-off after a failure (0: queue default)")
	f.DurationVar(&backoffMax, "backoff-max", 0, "longest retry back-off (0: queue default)")
	f.IntVar(&count, "count", 1, "number of jobs")
	f.StringSliceVar(&dependsOn, "depends-on", nil, "job ids this job waits for: it runs once they all succeeded (repeat or comma-separate)")
	f.BoolVar(&runAnyway, "run-anyway", false, "with --depends-on: run once every parent finished, even if one failed (default: cancel the job)")
	f.BoolVar(&chain, "chain", false, "with --count: each job waits for the one before it (a chain, submitted atomically)")
	return cmd
}

// Fetched is what fetch prints (JSON): the leased jobs, and with --ack the
// ids it acknowledged.
type Fetched struct {
	Jobs  []adminapi.Job `json:"jobs"`
	Acked []string       `json:"acked,omitempty"`
}

// payloadText shows a payload in a table: the text when it is UTF-8,
// else its size.
func payloadText(b []byte) string {
	if utf8.Valid(b) {
		return oneLine(string(b), 60)
	}
	return fmt.Sprintf("(%d bytes)", len(b))
}

func fetchCmd(g *globals) *cobra.Command {
	var queues []string
	var weights map[string]int
	var max int32
	var wait time.Duration
	var ack bool
	var worker string
	cmd := &cobra.Command{
		Use:   "fetch",
		Short: "Lease ready jobs (long-poll) and print them; --ack acknowledges each one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := nonNegative("wait", wait); err != nil {
				return err
			}
			return g.runFor(cmd, wait, func(ctx context.Context, cl *client.Client, p *printer) error {
				req := &raftqv1.FetchRequest{Queues: queues, MaxJobs: max, MaxWait: durationpb.New(wait), WorkerId: worker}
				if len(weights) > 0 {
					req.QueueWeights = map[string]int32{}
					for q, w := range weights {
						req.QueueWeights[q] = int32(w)
					}
					if !cmd.Flags().Changed("queue") {
						req.Queues = nil // the weights name the queues
					}
				}
				jobs, err := cl.Fetch(ctx, req)
				if err != nil {
					return err
				}
				out := Fetched{Jobs: []adminapi.Job{}}
				var rows [][]string
				for _, j := range jobs {
					v := adminapi.JobFromProto(j)
					state := v.State
					if ack {
						if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
							return fmt.Errorf("ack %s: %w", j.Id, err)
						}
						out.Acked = append(out.Acked, j.Id)
						state = "succeeded"
					}
					out.Jobs = append(out.Jobs, v)
					rows = append(rows, []string{v.ID, v.Queue, v.Type, state, strconv.FormatUint(v.LeaseToken, 10), fmt.Sprintf("%d/%d", v.Attempts, v.MaxAttempts), payloadText(v.Payload)})
				}
				if len(jobs) == 0 && !p.json {
					fmt.Fprintln(cmd.ErrOrStderr(), "no job ready within", wait)
					return nil
				}
				return p.print(out, []string{"ID", "QUEUE", "TYPE", "STATE", "LEASE TOKEN", "ATTEMPTS", "PAYLOAD"}, rows)
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&queues, "queue", []string{"default"}, "queues in preference order (repeat or comma-separate)")
	f.StringToIntVar(&weights, "weights", nil, "weighted selection instead of preference order, e.g. critical=3,low=1 (names the queues unless --queue is given)")
	f.Int32Var(&max, "max", 1, "most jobs to lease")
	f.DurationVar(&wait, "wait", 5*time.Second, "how long to wait for a job")
	f.BoolVar(&ack, "ack", false, "acknowledge each fetched job")
	f.StringVar(&worker, "worker", "brokerctl", "worker id recorded on the lease")
	return cmd
}

// leaseArgs parses JOB_ID LEASE_TOKEN.
func leaseArgs(args []string) (string, uint64, error) {
	tok, err := strconv.ParseUint(args[1], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("lease token %q: want the number fetch printed: %w", args[1], err)
	}
	return args[0], tok, nil
}

func ackCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ack JOB_ID LEASE_TOKEN",
		Short: "Acknowledge a leased job (it succeeded)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, tok, err := leaseArgs(args)
			if err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				if err := cl.Ack(ctx, id, tok); err != nil {
					return err
				}
				return p.kv(map[string]string{"id": id, "state": "succeeded"}, [][2]string{{"ID", id}, {"STATE", "succeeded"}})
			})
		},
	}
}

func nackCmd(g *globals) *cobra.Command {
	var reason string
	var retryAfter time.Duration
	var permanent bool
	cmd := &cobra.Command{
		Use:   "nack JOB_ID LEASE_TOKEN",
		Short: "Report a leased job failed: retried after a back-off, or dead when attempts are spent or --permanent",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := nonNegative("retry-after", retryAfter); err != nil {
				return err
			}
			id, tok, err := leaseArgs(args)
			if err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				req := &raftqv1.NackRequest{JobId: id, LeaseToken: tok, Error: reason, Permanent: permanent}
				if retryAfter > 0 {
					req.RetryAfter = durationpb.New(retryAfter)
				}
				resp, err := cl.Nack(ctx, req)
				if err != nil {
					return err
				}
				out := struct {
					ID    string     `json:"id"`
					State string     `json:"state"`
					RunAt *time.Time `json:"run_at,omitempty"`
				}{ID: id, State: adminapi.StateName(resp.State)}
				if resp.RunAt != nil {
					t := resp.RunAt.AsTime()
					out.RunAt = &t
				}
				return p.kv(out, [][2]string{{"ID", id}, {"STATE", out.State}, {"RUN AT", ts(out.RunAt)}})
			})
		},
	}
	cmd.Flags().StringVar(&reason, "error", "", "why it failed (kept as the job's last error)")
	cmd.Flags().DurationVar(&retryAfter, "retry-after", 0, "retry no earlier than this (0: the job's back-off)")
	cmd.Flags().BoolVar(&permanent, "permanent", false, "do not retry: dead-letter it now")
	return cmd
}

func extendCmd(g *globals) *cobra.Command {
	var by time.Duration
	cmd := &cobra.Command{
		Use:   "extend JOB_ID LEASE_TOKEN",
		Short: "Extend a job's lease; says whether a cancel was requested",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := nonNegative("by", by); err != nil {
				return err
			}
			id, tok, err := leaseArgs(args)
			if err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				req := &raftqv1.ExtendLeaseRequest{JobId: id, LeaseToken: tok}
				if by > 0 {
					req.ExtendBy = durationpb.New(by)
				}
				resp, err := cl.ExtendLease(ctx, req)
				if err != nil {
					return err
				}
				d := resp.LeaseDeadline.AsTime()
				out := struct {
					ID              string     `json:"id"`
					LeaseDeadline   *time.Time `json:"lease_deadline"`
					CancelRequested bool       `json:"cancel_requested"`
				}{id, &d, resp.CancelRequested}
				return p.kv(out, [][2]string{{"ID", id}, {"LEASE DEADLINE", ts(&d)}, {"CANCEL REQUESTED", strconv.FormatBool(resp.CancelRequested)}})
			})
		},
	}
	cmd.Flags().DurationVar(&by, "by", 0, "extend by this (0: the job's lease duration)")
	return cmd
}

func attemptsCmd(g *globals) *cobra.Command {
	svcd := os.Getenv("RAFTQ_SVCD")
	if svcd == "" {
		svcd = "127.0.0.1:7400" // make run's svcd
	}
	cmd := &cobra.Command{
		Use:   "attempts JOB_ID",
		Short: "A job's attempt history, as svcd recorded it (--svcd)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := g.printer(cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if err := g.reachable("svcd", []string{svcd}); err != nil {
				return err
			}
			o, err := g.clientOptions()
			if err != nil {
				return err
			}
			var dopts []grpc.DialOption
			if o.TLS != nil {
				dopts = append(dopts, results.WithTLS(o.TLS))
			}
			if o.Token != "" {
				dopts = append(dopts, results.WithToken(o.Token))
			}
			rc, err := results.Dial(svcd, dopts...)
			if err != nil {
				return err
			}
			defer rc.Close()
			ctx, cancel := g.ctx()
			defer cancel()
			as, err := rc.Attempts(ctx, args[0])
			if err != nil && !errors.Is(err, results.ErrNotFound) {
				return err
			}
			out := adminapi.AttemptsFromResults(as)
			var rows [][]string
			for _, a := range out {
				rows = append(rows, []string{strconv.Itoa(int(a.Attempt)), a.WorkerID, strconv.FormatUint(a.LeaseToken, 10), a.Status, a.Outcome, ts(a.StartedAt), ts(a.FinishedAt), oneLine(a.Error, 50)})
			}
			return p.print(map[string]any{"attempts": out}, []string{"ATTEMPT", "WORKER", "LEASE TOKEN", "STATUS", "OUTCOME", "STARTED", "FINISHED", "ERROR"}, rows)
		},
	}
	cmd.Flags().StringVar(&svcd, "svcd", svcd, "svcd gRPC address (env RAFTQ_SVCD)")
	return cmd
}
