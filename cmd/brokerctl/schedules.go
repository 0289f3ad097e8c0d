package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/adminapi"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// schedulesCmd manages periodic schedules: one at a time (put, get, list,
// pause, resume, delete) or declared in a file (apply -f).
func schedulesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "schedules", Short: "Periodic jobs: cron or interval schedules fired exactly once per tick"}
	show := func(p *printer, ss ...*raftqv1.Schedule) error {
		out := []adminapi.Schedule{}
		var rows [][]string
		for _, s := range ss {
			v := adminapi.ScheduleFromProto(s)
			out = append(out, v)
			when := v.Cron
			if when == "" {
				when = "every " + time.Duration(v.IntervalSeconds*float64(time.Second)).String()
			}
			if v.TimeZone != "" {
				when += " (" + v.TimeZone + ")"
			}
			rows = append(rows, []string{v.Name, v.Queue, v.Type, when, v.Overlap, strconv.Itoa(int(v.CatchUp)),
				strconv.FormatBool(v.Paused), timeText(v.LastTick), timeText(v.NextTick), i64(v.Fired), i64(v.Skipped)})
		}
		return p.print(map[string]any{"schedules": out},
			[]string{"NAME", "QUEUE", "TYPE", "WHEN", "OVERLAP", "CATCH-UP", "PAUSED", "LAST TICK", "NEXT TICK", "FIRED", "SKIPPED"}, rows)
	}

	var f scheduleFlags
	put := &cobra.Command{
		Use:   "put NAME --queue Q --type T (--cron EXPR | --every D)",
		Short: "Create a schedule or replace its definition (its firing state stays)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.spec(cmd, args[0])
			if err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				s, _, err := cl.PutSchedule(ctx, spec)
				if err != nil {
					return err
				}
				return show(p, s)
			})
		},
	}
	f.add(put)
	get := &cobra.Command{
		Use: "get NAME", Short: "One schedule with its last and next tick", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				s, err := cl.GetSchedule(ctx, args[0], 0)
				if err != nil {
					return err
				}
				return show(p, s)
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "Every schedule, sorted by name", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				ss, err := cl.ListSchedules(ctx, 0)
				if err != nil {
					return err
				}
				return show(p, ss...)
			})
		},
	}
	pause := func(use, short string, paused bool) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
					var s *raftqv1.Schedule
					var err error
					if paused {
						s, err = cl.PauseSchedule(ctx, args[0])
					} else {
						s, err = cl.ResumeSchedule(ctx, args[0])
					}
					if err != nil {
						return err
					}
					return show(p, s)
				})
			},
		}
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Remove a schedule (the jobs it created stay)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				if err := cl.DeleteSchedule(ctx, args[0]); err != nil {
					return err
				}
				return p.kv(map[string]any{"name": args[0], "deleted": true}, [][2]string{{"NAME", args[0]}, {"DELETED", "true"}})
			})
		},
	}
	cmd.AddCommand(put, get, list, pause("pause", "Stop firing a schedule (ticks while paused never fire)", true),
		pause("resume", "Fire a paused schedule again, from its next tick", false), del, applyCmd(g))
	return cmd
}

func timeText(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// scheduleFlags are put's flags.
type scheduleFlags struct {
	queue, typ, payload, payloadFile, cronExpr, tz, overlap string
	every, jitter, lease                                    time.Duration
	priority, maxAttempts, catchUp                          int32
	paused                                                  bool
}

func (f *scheduleFlags) add(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.queue, "queue", "", "queue of the jobs (required)")
	fl.StringVar(&f.typ, "type", "", "type of the jobs (required)")
	fl.StringVar(&f.payload, "payload", "", "payload of every job (bytes of the string)")
	fl.StringVar(&f.payloadFile, "payload-file", "", "read the payload from this file (- for stdin)")
	fl.StringVar(&f.cronExpr, "cron", "", `cron expression: 5 fields ("30 2 * * *") or a descriptor ("@hourly", "@every 30s")`)
	fl.DurationVar(&f.every, "every", 0, "fixed interval instead of --cron (at least 1s)")
	fl.StringVar(&f.tz, "tz", "", `IANA time zone the cron expression is read in ("Europe/Paris"; default UTC)`)
	fl.DurationVar(&f.jitter, "jitter", 0, "each job runs at its tick plus a delay in [0, jitter)")
	fl.StringVar(&f.overlap, "overlap", "skip", "while the previous tick's job is not finished: skip, allow or cancel-previous")
	fl.Int32Var(&f.catchUp, "catch-up", 0, "after an outage, fire at most this many missed ticks (the most recent); 0 skips them")
	fl.BoolVar(&f.paused, "paused", false, "create it paused")
	fl.Int32Var(&f.priority, "priority", 0, "priority of the jobs")
	fl.Int32Var(&f.maxAttempts, "max-attempts", 0, "max attempts of the jobs (0: the queue's default)")
	fl.DurationVar(&f.lease, "lease", 0, "lease duration of the jobs (0: the queue's default)")
}

func (f *scheduleFlags) spec(cmd *cobra.Command, name string) (*raftqv1.ScheduleSpec, error) {
	body, err := readPayload(cmd, f.payload, f.payloadFile)
	if err != nil {
		return nil, err
	}
	ov, err := parseOverlap(f.overlap)
	if err != nil {
		return nil, err
	}
	job := client.NewJob(f.queue, f.typ, body, client.WithPriority(f.priority), client.WithMaxAttempts(f.maxAttempts))
	if f.lease > 0 {
		job.LeaseDuration = durationpb.New(f.lease)
	}
	s := &raftqv1.ScheduleSpec{Name: name, Job: job, Cron: f.cronExpr, TimeZone: f.tz, Overlap: ov, CatchUp: f.catchUp, Paused: f.paused}
	if f.every != 0 {
		s.Interval = durationpb.New(f.every)
	}
	if f.jitter != 0 {
		s.Jitter = durationpb.New(f.jitter)
	}
	return s, nil
}

func parseOverlap(s string) (raftqv1.OverlapPolicy, error) {
	for v := range raftqv1.OverlapPolicy_name {
		p := raftqv1.OverlapPolicy(v)
		if adminapi.OverlapName(p) == strings.ToLower(s) {
			return p, nil
		}
	}
	if s == "" {
		return raftqv1.OverlapPolicy_OVERLAP_POLICY_SKIP, nil
	}
	return 0, fmt.Errorf("overlap %q: want skip, allow or cancel-previous", s)
}

// scheduleFile is the declarative file of `schedules apply -f`.
type scheduleFile struct {
	Schedules []fileSchedule `yaml:"schedules"`
}

type fileSchedule struct {
	Name     string        `yaml:"name"`
	Cron     string        `yaml:"cron"`
	Every    time.Duration `yaml:"every"`
	TimeZone string        `yaml:"time_zone"`
	Jitter   time.Duration `yaml:"jitter"`
	Overlap  string        `yaml:"overlap"`
	CatchUp  int32         `yaml:"catch_up"`
	Paused   bool          `yaml:"paused"`
	Job      struct {
		Queue       string        `yaml:"queue"`
		Type        string        `yaml:"type"`
		Payload     string        `yaml:"payload"`
		Priority    int32         `yaml:"priority"`
		MaxAttempts int32         `yaml:"max_attempts"`
		Lease       time.Duration `yaml:"lease"`
	} `yaml:"job"`
}

// readScheduleFile parses a schedules file strictly: an unknown key (a
// typo) or a name declared twice is an error, before anything is sent.
func readScheduleFile(r io.Reader) ([]*raftqv1.ScheduleSpec, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f scheduleFile
	if err := dec.Decode(&f); err != nil && err != io.EOF {
		return nil, fmt.Errorf("schedules file: %w", err)
	}
	seen := map[string]bool{}
	var out []*raftqv1.ScheduleSpec
	for i, fs := range f.Schedules {
		if seen[fs.Name] {
			return nil, fmt.Errorf("schedules file: %q declared twice", fs.Name)
		}
		seen[fs.Name] = true
		ov, err := parseOverlap(fs.Overlap)
		if err != nil {
			return nil, fmt.Errorf("schedules file: schedule %d (%q): %w", i, fs.Name, err)
		}
		job := client.NewJob(fs.Job.Queue, fs.Job.Type, []byte(fs.Job.Payload), client.WithPriority(fs.Job.Priority),
			client.WithMaxAttempts(fs.Job.MaxAttempts))
		if fs.Job.Lease > 0 {
			job.LeaseDuration = durationpb.New(fs.Job.Lease)
		}
		if len(fs.Job.Payload) == 0 {
			job.Payload = nil
		}
		s := &raftqv1.ScheduleSpec{Name: fs.Name, Job: job, Cron: fs.Cron, TimeZone: fs.TimeZone, Overlap: ov, CatchUp: fs.CatchUp, Paused: fs.Paused}
		if fs.Every != 0 {
			s.Interval = durationpb.New(fs.Every)
		}
		if fs.Jitter != 0 {
			s.Jitter = durationpb.New(fs.Jitter)
		}
		out = append(out, s)
	}
	return out, nil
}

// applyCmd makes the cluster's schedules what a file declares: each one
// is put (unchanged ones stay as they are, firing state included), and
// with --prune the schedules the file does not name are deleted. Running
// it twice changes nothing the second time.
func applyCmd(g *globals) *cobra.Command {
	var file string
	var prune bool
	c := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update the schedules declared in a YAML file (idempotent; --prune deletes the others)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = cmd.InOrStdin()
			if file != "-" {
				fh, err := os.Open(file)
				if err != nil {
					return err
				}
				defer fh.Close()
				r = fh
			}
			specs, err := readScheduleFile(r)
			if err != nil {
				return err
			}
			return g.run(cmd, func(ctx context.Context, cl *client.Client, p *printer) error {
				type result struct {
					Name   string `json:"name"`
					Action string `json:"action"` // created, updated, unchanged, deleted
				}
				existing, err := cl.ListSchedules(ctx, 0)
				if err != nil {
					return err
				}
				had := map[string]bool{}
				for _, s := range existing {
					had[s.Spec.Name] = true
				}
				out := []result{}
				declared := map[string]bool{}
				for _, spec := range specs {
					declared[spec.Name] = true
					_, changed, err := cl.PutSchedule(ctx, spec)
					if err != nil {
						return fmt.Errorf("schedule %q: %w (schedules before it were applied)", spec.Name, err)
					}
					action := "unchanged"
					switch {
					case !had[spec.Name]:
						action = "created"
					case changed:
						action = "updated"
					}
					out = append(out, result{spec.Name, action})
				}
				if prune {
					for _, s := range existing {
						if !declared[s.Spec.Name] {
							if err := cl.DeleteSchedule(ctx, s.Spec.Name); err != nil {
								return err
							}
							out = append(out, result{s.Spec.Name, "deleted"})
						}
					}
				}
				var rows [][]string
				for _, r := range out {
					rows = append(rows, []string{r.Name, r.Action})
				}
				return p.print(map[string]any{"schedules": out}, []string{"NAME", "ACTION"}, rows)
			})
		},
	}
	c.Flags().StringVarP(&file, "file", "f", "", "YAML file of schedules (- for stdin)")
	c.Flags().BoolVar(&prune, "prune", false, "delete the schedules the file does not declare")
	_ = c.MarkFlagRequired("file")
	return c
}
