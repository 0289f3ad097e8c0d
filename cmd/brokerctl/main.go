// Command brokerctl uses a raftq cluster from a shell: enqueue, inspect,
// fetch and ack jobs, queue stats, cluster status, and a benchmark.
//
// It finds the leader by itself from any broker addresses given with
// --brokers (or RAFTQ_BROKERS).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		os.Exit(1)
	}
}

type globals struct {
	brokers string
	timeout time.Duration
	output  string // -o: table or json (output.go)
	// TLS and the bearer token (security.go).
	tlsCA, tlsCert, tlsKey, token string
}

func (g *globals) client() (*client.Client, error) {
	var addrs []string
	for _, a := range strings.Split(g.brokers, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	opts, err := g.clientOptions()
	if err != nil {
		return nil, err
	}
	return client.New(addrs, opts)
}

func (g *globals) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.timeout)
}

func printProto(m proto.Message) {
	b, _ := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: false}.Marshal(m)
	fmt.Println(string(b))
}

func rootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "brokerctl",
		Short:         "Use a raftq broker cluster from the shell",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	def := os.Getenv("RAFTQ_BROKERS")
	if def == "" {
		def = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
	}
	root.PersistentFlags().StringVar(&g.brokers, "brokers", def, "broker gRPC addresses, comma-separated (env RAFTQ_BROKERS)")
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", 30*time.Second, "overall timeout of a command")
	g.securityFlags(root.PersistentFlags())
	root.AddCommand(enqueueCmd(g), getCmd(g), fetchCmd(g), ackCmd(g), cancelCmd(g), statsCmd(g), statusCmd(g), benchCmd(g))
	// The operator's commands (ops.go, output.go).
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(jobsCmd(g), queuesCmd(g), dlqCmd(g), clusterCmd(g), snapshotCmd(g))
	root.AddCommand(configCmd(g)) // live settings in etcd (config.go)
	return root
}

func enqueueCmd(g *globals) *cobra.Command {
	var spec raftqv1.JobSpec
	var payload, key string
	var delay, lease time.Duration
	var count int
	cmd := &cobra.Command{
		Use:   "enqueue",
		Short: "Enqueue a job (or --count copies in one atomic batch); prints the job ids",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, _ *printer) error {
				var specs []*raftqv1.JobSpec
				for i := 0; i < count; i++ {
					s := proto.Clone(&spec).(*raftqv1.JobSpec)
					s.Payload = []byte(payload)
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
					specs = append(specs, s)
				}
				res, err := cl.Enqueue(ctx, specs...)
				if err != nil {
					return err
				}
				for _, r := range res {
					if r.Duplicate {
						fmt.Println(r.JobId, "(duplicate of an earlier enqueue)")
					} else {
						fmt.Println(r.JobId)
					}
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Queue, "queue", "default", "queue name")
	f.StringVar(&spec.Type, "type", "echo", "job type")
	f.StringVar(&payload, "payload", "", "payload (bytes of the string)")
	f.Int32Var(&spec.Priority, "priority", 0, "priority (higher first)")
	f.DurationVar(&delay, "delay", 0, "run no earlier than this from now")
	f.Int32Var(&spec.MaxAttempts, "max-attempts", 0, "attempts before dead-lettering (0: broker default)")
	f.DurationVar(&lease, "lease", 0, "lease duration (0: broker default)")
	f.StringVar(&key, "key", "", "idempotency key")
	f.IntVar(&count, "count", 1, "number of jobs")
	return cmd
}

func getCmd(g *globals) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "get JOB_ID",
		Short: "Show a job (linearizable read unless --stale)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, _ *printer) error {
				c := raftqv1.Consistency_CONSISTENCY_LINEARIZABLE
				if stale {
					c = raftqv1.Consistency_CONSISTENCY_STALE
				}
				j, err := cl.GetJob(ctx, args[0], c)
				if err != nil {
					return err
				}
				printProto(j)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "read from whichever broker answers, possibly stale")
	return cmd
}

func fetchCmd(g *globals) *cobra.Command {
	var queues []string
	var max int32
	var wait time.Duration
	var ack bool
	var worker string
	cmd := &cobra.Command{
		Use:   "fetch",
		Short: "Lease ready jobs (long-poll) and print them; --ack acknowledges each one",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), g.timeout+wait)
			defer cancel()
			jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: queues, MaxJobs: max, MaxWait: durationpb.New(wait), WorkerId: worker})
			if err != nil {
				return err
			}
			if len(jobs) == 0 {
				fmt.Fprintln(os.Stderr, "no job ready within", wait)
			}
			for _, j := range jobs {
				printProto(j)
				if ack {
					if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
						return fmt.Errorf("ack %s: %w", j.Id, err)
					}
					fmt.Fprintf(os.Stderr, "acked %s (token %d)\n", j.Id, j.LeaseToken)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&queues, "queue", []string{"default"}, "queues in preference order (repeat or comma-separate)")
	f.Int32Var(&max, "max", 1, "most jobs to lease")
	f.DurationVar(&wait, "wait", 5*time.Second, "how long to wait for a job")
	f.BoolVar(&ack, "ack", false, "acknowledge each fetched job")
	f.StringVar(&worker, "worker", "brokerctl", "worker id recorded on the lease")
	return cmd
}

func ackCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ack JOB_ID LEASE_TOKEN",
		Short: "Acknowledge a leased job",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("lease token %q: %w", args[1], err)
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, _ *printer) error {
				return cl.Ack(ctx, args[0], tok)
			})
		},
	}
}

func cancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel JOB_ID",
		Short: "Cancel a job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, _ *printer) error {
				st, err := cl.CancelJob(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Println(st)
				return nil
			})
		},
	}
}

func statsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats [QUEUE...]",
		Short: "Job counts per state for each queue",
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, _ *printer) error {
				qs, err := cl.QueueStats(ctx, args...)
				if err != nil {
					return err
				}
				fmt.Printf("%-24s %6s %10s %10s %10s %10s %10s %10s\n", "QUEUE", "PAUSED", "SCHEDULED", "READY", "LEASED", "SUCCEEDED", "DEAD", "CANCELLED")
				for _, q := range qs {
					fmt.Printf("%-24s %6v %10d %10d %10d %10d %10d %10d\n", q.Queue, q.Paused, q.Scheduled, q.Ready, q.Leased, q.Succeeded, q.Dead, q.Cancelled)
				}
				return nil
			})
		},
	}
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Each broker's view of the cluster",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			for _, a := range strings.Split(g.brokers, ",") {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				st, err := cl.Status(ctx, strings.TrimSpace(a))
				cancel()
				if err != nil {
					fmt.Printf("%s: unreachable: %v\n", a, err)
					continue
				}
				b, _ := json.Marshal(map[string]any{
					"addr": a, "node": st.NodeId, "state": st.State, "leader": st.LeaderId, "term": st.Term,
					"commit_index": st.CommitIndex, "applied_index": st.AppliedIndex, "members": len(st.Members), "state_hash": st.StateHash[:16],
				})
				fmt.Println(string(b))
			}
			return nil
		},
	}
}
