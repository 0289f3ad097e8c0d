package brokerd

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Periodic schedules: validation (the API), tick computation, the leader's
// scheduler loop and the Schedules gRPC service. The FSM (fsm/schedule.go)
// holds each schedule and its last tick; the leader computes every time
// (ticks, jitter, job ids) and proposes one FireSchedule command per tick,
// which Apply accepts only for a tick after the schedule's last one: a
// tick re-proposed by a new leader is a no-op, so each tick creates at most
// one job across leader changes.

// Schedule bounds.
const (
	maxScheduleCatchUp = 1000
	minScheduleEvery   = time.Second
	// maxTickScan bounds the cron ticks walked to find the missed ones
	// after an outage (about two years of minutely ticks); the rest are
	// found on the next pass.
	maxTickScan = 1 << 20
)

// scheduleGrace is how late a tick may fire and still count as on time:
// a due tick older than this is missed, and the schedule's missed-tick
// policy (catch_up) decides whether it fires. Failovers and busy leaders
// fire within it; an outage of the whole cluster does not. A variable so
// tests can shorten it.
var scheduleGrace = 10 * time.Second

// scheduleRecheck is the longest the scheduler sleeps without a due tick,
// and scheduleDebounce how long it waits after a state change before it
// reads the schedules again (every Apply signals a change).
var (
	scheduleRecheck  = time.Minute
	scheduleDebounce = 100 * time.Millisecond
)

// validateSchedule checks a PutSchedule request and turns it into the
// FSM's spec: the job template with the queue's defaults filled in, the
// cron expression parsed (and kept as written) or the interval, the time
// zone loaded. Errors wrap apierr.ErrInvalid and name the field.
func validateSchedule(lim Limits, defaults func(queue string) Defaults, s *raftqv1.ScheduleSpec, now time.Time) (*fsmpb.ScheduleSpec, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: schedule is required", apierr.ErrInvalid)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: schedule %q: %s", apierr.ErrInvalid, s.Name, fmt.Sprintf(format, args...))
	}
	if err := checkName("schedule name", s.Name); err != nil {
		return nil, err
	}
	if s.Job == nil {
		return nil, bad("job is required")
	}
	if s.Job.Delay != nil || s.Job.RunAt != nil || s.Job.IdempotencyKey != "" {
		return nil, bad("job.delay, job.run_at and job.idempotency_key must be unset (each tick's job is unique by (schedule, tick))")
	}
	if s.Job.UniqueKey != "" || s.Job.UniqueMode != raftqv1.UniqueMode_UNIQUE_MODE_UNSPECIFIED || s.Job.ScheduleToStart != nil {
		return nil, bad("job.unique_key, job.unique_mode and job.schedule_to_start are not supported in a schedule's job (the overlap policy keeps one tick's job at a time; job.start_to_close is)")
	}
	jobs, err := validateEnqueue(lim, defaults, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{s.Job}}, now)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", s.Name, err)
	}
	tmpl := jobs[0]
	tmpl.Id, tmpl.RunAt = "", 0
	out := &fsmpb.ScheduleSpec{Name: s.Name, Job: tmpl, Cron: strings.TrimSpace(s.Cron), TimeZone: s.TimeZone,
		CatchUp: s.CatchUp, Paused: s.Paused}
	var interval time.Duration
	if s.Interval != nil {
		if err := s.Interval.CheckValid(); err != nil {
			return nil, bad("interval: %v", err)
		}
		interval = s.Interval.AsDuration()
	}
	switch {
	case out.Cron == "" && interval == 0:
		return nil, bad("one of cron and interval is required")
	case out.Cron != "" && interval != 0:
		return nil, bad("cron and interval are mutually exclusive")
	case interval != 0 && (interval < minScheduleEvery || interval > lim.MaxDelay):
		return nil, bad("interval must be between %s and %s", minScheduleEvery, lim.MaxDelay)
	}
	out.Interval = int64(interval)
	if _, err := loadZone(s.TimeZone); err != nil {
		return nil, bad("%v", err)
	}
	if out.Cron != "" {
		if _, err := parseCron(out.Cron); err != nil {
			return nil, bad("%v", err)
		}
	}
	if s.Jitter != nil {
		if err := s.Jitter.CheckValid(); err != nil || s.Jitter.AsDuration() < 0 || s.Jitter.AsDuration() > lim.MaxDelay {
			return nil, bad("jitter must be between 0 and %s", lim.MaxDelay)
		}
		out.Jitter = int64(s.Jitter.AsDuration())
	}
	if s.CatchUp < 0 || s.CatchUp > maxScheduleCatchUp {
		return nil, bad("catch_up %d outside 0..%d", s.CatchUp, maxScheduleCatchUp)
	}
	switch s.Overlap {
	case raftqv1.OverlapPolicy_OVERLAP_POLICY_SKIP, raftqv1.OverlapPolicy_OVERLAP_POLICY_ALLOW,
		raftqv1.OverlapPolicy_OVERLAP_POLICY_CANCEL_PREVIOUS:
		out.Overlap = int32(s.Overlap)
	default:
		return nil, bad("unknown overlap policy %d", s.Overlap)
	}
	return out, nil
}

// loadZone loads an IANA time zone; "" is UTC. "Local" is refused: it
// would mean something else on every node.
func loadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, errors.New(`time_zone "Local" differs per node; name an IANA zone such as "Europe/Paris"`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time_zone %q (want an IANA name such as \"America/New_York\")", name)
	}
	return loc, nil
}

// parseCron parses a standard cron expression: 5 fields or a descriptor
// (@hourly, @every 30s). A TZ= or CRON_TZ= prefix is refused: the zone is
// the schedule's time_zone, in one place.
func parseCron(expr string) (cron.Schedule, error) {
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, errors.New("bad cron expression: set time_zone instead of a TZ= prefix")
	}
	sch, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("bad cron expression %q: %v", expr, err)
	}
	// robfig rounds a shorter @every up to a second; say so instead.
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		if every, err := time.ParseDuration(strings.TrimSpace(d)); err != nil || every < minScheduleEvery {
			return nil, fmt.Errorf("bad cron expression %q: @every must be at least %s", expr, minScheduleEvery)
		}
	}
	return sch, nil
}

// ticker computes a schedule's tick times. Every time is the leader's.
type ticker struct {
	cron     cron.Schedule // nil for an interval
	every    time.Duration // the interval, or an @every delay
	anchor   time.Time
	location *time.Location
}

func newTicker(sc *fsm.Schedule) (*ticker, error) {
	loc, err := loadZone(sc.Spec.GetTimeZone())
	if err != nil {
		return nil, err
	}
	t := &ticker{location: loc, anchor: time.Unix(0, sc.Anchor), every: time.Duration(sc.Spec.GetInterval())}
	if sc.Spec.GetCron() != "" {
		if t.cron, err = parseCron(sc.Spec.GetCron()); err != nil {
			return nil, err
		}
		if c, ok := t.cron.(cron.ConstantDelaySchedule); ok {
			t.every = c.Delay
		}
	}
	return t, nil
}

// next is the first tick strictly after t.
func (tk *ticker) next(t time.Time) time.Time {
	if tk.cron != nil {
		return tk.cron.Next(t.In(tk.location))
	}
	// Fixed interval: anchor + k*interval.
	k := t.Sub(tk.anchor) / tk.every
	if t.Before(tk.anchor) {
		k = -1
	}
	return tk.anchor.Add((k + 1) * tk.every)
}

// due walks the ticks in (after, now] and splits them at graceStart:
// the missed ones (at or before it), of which it keeps the last keep and
// counts all, and the on-time ones after it.
func (tk *ticker) due(after, graceStart, now time.Time, keep int) (missed []time.Time, missedTotal int64, onTime []time.Time) {
	first := tk.next(after)
	if first.IsZero() || first.After(now) {
		return nil, 0, nil
	}
	if tk.every > 0 && (tk.cron == nil || isConstant(tk.cron)) {
		// Evenly spaced from first: count without walking a long outage.
		total := int64(now.Sub(first)/tk.every) + 1
		if !graceStart.Before(first) {
			missedTotal = min(total, int64(graceStart.Sub(first)/tk.every)+1)
		}
		for i := max(0, missedTotal-int64(keep)); i < missedTotal; i++ {
			missed = append(missed, first.Add(time.Duration(i)*tk.every))
		}
		for i := missedTotal; i < total; i++ {
			onTime = append(onTime, first.Add(time.Duration(i)*tk.every))
		}
		return missed, missedTotal, onTime
	}
	for t, n := first, 0; !t.IsZero() && !t.After(now) && n < maxTickScan; t, n = tk.next(t), n+1 {
		if t.After(graceStart) {
			onTime = append(onTime, t)
			continue
		}
		missedTotal++
		missed = append(missed, t)
		if len(missed) > keep {
			missed = missed[1:]
		}
	}
	return missed, missedTotal, onTime
}

func isConstant(s cron.Schedule) bool {
	_, ok := s.(cron.ConstantDelaySchedule)
	return ok
}

// tickJitter is the delay added to a tick's run_at, in [0, jitter): a hash
// of (schedule, tick), not a random number, so that a re-proposed tick
// carries the same run_at.
func tickJitter(name string, tick time.Time, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte(tick.UTC().Format(time.RFC3339Nano)))
	return time.Duration(h.Sum64() % uint64(jitter))
}

// scheduleMetrics counts ticks, by schedule, on the leader that proposed
// them.
type scheduleMetrics struct {
	fired   *prometheus.CounterVec
	skipped *prometheus.CounterVec
}

func newScheduleMetrics(reg prometheus.Registerer) *scheduleMetrics {
	m := &scheduleMetrics{
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "schedule_ticks_fired_total",
			Help: "Schedule ticks that created a job, by schedule; counted by the leader that proposed them."}, []string{"schedule"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "schedule_ticks_skipped_total",
			Help: "Schedule ticks that created no job, by schedule and reason (overlap: the previous job was not terminal; missed: dropped by the missed-tick policy after an outage)."},
			[]string{"schedule", "reason"}),
	}
	reg.MustRegister(m.fired, m.skipped)
	return m
}

// runScheduler is the leader's scheduler duty (leadership.go): it wakes at
// the next due tick of any schedule (or when the state changes), fires
// what is due, and sleeps again, until the term's ctx ends.
func (n *Node) runScheduler(ctx context.Context) {
	m := n.schedm
	tickers := map[string]*ticker{} // by name; rebuilt when the version changes
	versions := map[string]uint64{} // the version each ticker was built for
	broken := map[string]uint64{}   // version that failed to compile (logged once)
	for ctx.Err() == nil {
		changed := n.fsm.Changed()
		now := n.clock()
		wake := now.Add(scheduleRecheck)
		seen := map[string]bool{}
		for _, sc := range n.fsm.Schedules() {
			name := sc.Spec.GetName()
			seen[name] = true
			if sc.Spec.GetPaused() {
				continue
			}
			if _, sealed := n.fsm.Sealed(sc.Spec.GetJob().GetQueue()); sealed {
				// The queue is being handed to another group, which fires
				// the schedule once the move has imported it; here the FSM
				// refuses every tick from the seal on, so proposing one
				// would only cost a Raft entry and a warning a second until
				// the move deletes the schedule. The seal's removal (a
				// queue moved back) changes the state and wakes this loop.
				continue
			}
			tk := tickers[name]
			if tk == nil || versions[name] != sc.Version || tk.anchor.UnixNano() != sc.Anchor {
				var err error
				if tk, err = newTicker(sc); err != nil {
					if broken[name] != sc.Version {
						n.log.Error("schedule cannot be computed on this node; not firing it", "schedule", name, "err", err)
						broken[name] = sc.Version
					}
					continue
				}
				tickers[name], versions[name] = tk, sc.Version
			}
			after, err := n.fireDue(ctx, m, sc, tk, now)
			if errors.Is(err, fsm.ErrQueueMoved) {
				// The seal was applied between the check above and the
				// tick's apply. That apply closed changed, so the next
				// pass comes at once and skips the schedule: no warning.
				continue
			}
			if err != nil {
				if ctx.Err() == nil {
					n.log.Warn("schedule fire", "schedule", name, "err", err)
				}
				wake = now.Add(time.Second) // retry soon
				continue
			}
			if nx := tk.next(after); !nx.IsZero() && nx.Before(wake) {
				wake = nx
			}
		}
		for name := range tickers { // deleted schedules
			if !seen[name] {
				delete(tickers, name)
				delete(versions, name)
			}
		}
		d := wake.Sub(n.clock())
		if d <= 0 {
			continue
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-changed:
			timer.Stop()
			select {
			case <-ctx.Done():
				return
			case <-time.After(scheduleDebounce):
			}
		}
	}
}

// fireDue proposes sc's due ticks: those within scheduleGrace always fire;
// of the older (missed) ones the catch_up most recent fire and the rest are
// recorded as skipped. It returns the time after which the next tick lies.
func (n *Node) fireDue(ctx context.Context, m *scheduleMetrics, sc *fsm.Schedule, tk *ticker, now time.Time) (time.Time, error) {
	after := time.Unix(0, sc.After())
	missed, missedTotal, onTime := tk.due(after, now.Add(-scheduleGrace), now, int(sc.Spec.GetCatchUp()))
	skipped := missedTotal - int64(len(missed))
	if skipped > 0 && len(missed) == 0 && len(onTime) == 0 {
		// Nothing fires now: record the dropped ticks at once, so they
		// are counted (and the next pass does not walk them again).
		all, _, _ := tk.due(after, now, now, 1)
		if err := n.proposeFire(ctx, m, sc, all[0], skipped-1, false); err != nil {
			return after, err
		}
		return all[0], nil
	}
	for _, tick := range append(missed, onTime...) {
		if err := n.proposeFire(ctx, m, sc, tick, skipped, true); err != nil {
			return after, err
		}
		skipped = 0
		after = tick
	}
	return after, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// proposeFire proposes one tick: with a job, or (withJob false) as a
// skipped tick. skipped counts the missed ticks dropped before it. A
// stale-tick refusal (the tick was fired already, or the schedule changed
// meanwhile) is not an error: the next pass reads the schedule again.
func (n *Node) proposeFire(ctx context.Context, m *scheduleMetrics, sc *fsm.Schedule, tick time.Time, skipped int64, withJob bool) error {
	name := sc.Spec.GetName()
	fire := &fsmpb.FireSchedule{Name: name, Version: sc.Version, Tick: tick.UnixNano(), SkippedTicks: skipped}
	if withJob {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		j := proto.Clone(sc.Spec.GetJob()).(*fsmpb.NewJob)
		// The id names this group, as an enqueued job's does, so that
		// any node routes calls about the job (Ack, GetJob) here.
		j.Id = placement.JobID(id.String(), n.cfg.group)
		j.RunAt = tick.Add(tickJitter(name, tick, time.Duration(sc.Spec.GetJitter()))).UnixNano()
		fire.Job = j
	}
	r := n.prop.Propose(ctx, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_FIRE_SCHEDULE,
		Body: &fsmpb.Command_FireSchedule{FireSchedule: fire},
	})
	if r.Err != nil {
		return r.Err
	}
	if err := r.Result.Err; err != nil {
		if errors.Is(err, fsm.ErrStaleTick) || errors.Is(err, fsm.ErrNotFound) || errors.Is(err, fsm.ErrWrongState) {
			return nil
		}
		return err
	}
	out := r.Result.Fire
	if !withJob {
		skipped++ // this tick too
	}
	if skipped > 0 {
		m.skipped.WithLabelValues(name, "missed").Add(float64(skipped))
	}
	switch {
	case out == nil:
	case out.Job != nil:
		m.fired.WithLabelValues(name).Inc()
		n.metrics.enqueued.WithLabelValues(out.Job.Queue).Inc()
	case out.OverlapSkipped:
		m.skipped.WithLabelValues(name, "overlap").Inc()
	}
	return nil
}

// ---- API ----

type scheduleService struct {
	raftqv1.UnimplementedSchedulesServer
	n *Node
}

// scheduleToProto converts a stored schedule; next_tick is computed here
// (with this node's clock and time zone data).
func (n *Node) scheduleToProto(sc *fsm.Schedule) *raftqv1.Schedule {
	ts := func(ns int64) *timestamppb.Timestamp {
		if ns == 0 {
			return nil
		}
		return timestamppb.New(time.Unix(0, ns))
	}
	sp := sc.Spec
	j := sp.GetJob()
	out := &raftqv1.Schedule{
		Spec: &raftqv1.ScheduleSpec{
			Name: sp.GetName(),
			Job: &raftqv1.JobSpec{
				Queue: j.GetQueue(), Type: j.GetType(), Payload: j.GetPayload(), Priority: j.GetPriority(),
				MaxAttempts:   j.GetMaxAttempts(),
				LeaseDuration: durationpb.New(time.Duration(j.GetLeaseDuration())),
				DedupWindow:   durationpb.New(time.Duration(j.GetDedupWindow())),
				Retry: &raftqv1.RetryPolicy{
					InitialBackoff: durationpb.New(time.Duration(j.GetInitialBackoff())),
					MaxBackoff:     durationpb.New(time.Duration(j.GetMaxBackoff())),
				},
			},
			Cron:     sp.GetCron(),
			TimeZone: sp.GetTimeZone(),
			Overlap:  raftqv1.OverlapPolicy(sp.GetOverlap()),
			CatchUp:  sp.GetCatchUp(),
			Paused:   sp.GetPaused(),
		},
		LastTick:  ts(sc.LastTick),
		LastJobId: sc.LastJobID,
		Fired:     sc.Fired,
		Skipped:   sc.Skipped,
		CreatedAt: ts(sc.CreatedAt),
		UpdatedAt: ts(sc.UpdatedAt),
	}
	if sp.GetInterval() > 0 {
		out.Spec.Interval = durationpb.New(time.Duration(sp.GetInterval()))
	}
	if sp.GetJitter() > 0 {
		out.Spec.Jitter = durationpb.New(time.Duration(sp.GetJitter()))
	}
	if !sp.GetPaused() {
		if tk, err := newTicker(sc); err == nil {
			if nx := tk.next(time.Unix(0, sc.After())); !nx.IsZero() {
				out.NextTick = timestamppb.New(nx)
			}
		}
	}
	return out
}

func checkScheduleName(name string) error { return checkName("schedule name", name) }

func (s *scheduleService) PutSchedule(ctx context.Context, req *raftqv1.PutScheduleRequest) (*raftqv1.PutScheduleResponse, error) {
	n := s.n
	if !n.isLeader() {
		return forward(ctx, n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.PutScheduleResponse, error) {
			return raftqv1.NewSchedulesClient(c).PutSchedule(ctx, req)
		})
	}
	sp, err := validateSchedule(n.cfg.Limits, n.queueDefaults, req.Schedule, n.clock())
	if err != nil {
		return nil, apierr.FromError(err)
	}
	before, existed := n.fsm.Schedule(sp.Name)
	res, err := n.propose(ctx, &fsmpb.Command{
		Type: fsmpb.CommandType_COMMAND_TYPE_PUT_SCHEDULE,
		Body: &fsmpb.Command_PutSchedule{PutSchedule: sp},
	})
	if err != nil {
		return nil, err
	}
	changed := !existed || res.Schedule.Version != before.Version
	return &raftqv1.PutScheduleResponse{Schedule: n.scheduleToProto(res.Schedule), Changed: changed}, nil
}

func (s *scheduleService) refCmd(ctx context.Context, name string, t fsmpb.CommandType) (*fsm.Result, error) {
	if err := checkScheduleName(name); err != nil {
		return nil, apierr.FromError(err)
	}
	ref := &fsmpb.ScheduleRef{Name: name}
	cmd := &fsmpb.Command{Type: t}
	switch t {
	case fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE:
		cmd.Body = &fsmpb.Command_PauseSchedule{PauseSchedule: ref}
	case fsmpb.CommandType_COMMAND_TYPE_RESUME_SCHEDULE:
		cmd.Body = &fsmpb.Command_ResumeSchedule{ResumeSchedule: ref}
	default:
		cmd.Body = &fsmpb.Command_DeleteSchedule{DeleteSchedule: ref}
	}
	res, err := s.n.propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

func (s *scheduleService) PauseSchedule(ctx context.Context, req *raftqv1.PauseScheduleRequest) (*raftqv1.PauseScheduleResponse, error) {
	if !s.n.isLeader() {
		return forward(ctx, s.n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.PauseScheduleResponse, error) {
			return raftqv1.NewSchedulesClient(c).PauseSchedule(ctx, req)
		})
	}
	res, err := s.refCmd(ctx, req.Name, fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE)
	if err != nil {
		return nil, err
	}
	return &raftqv1.PauseScheduleResponse{Schedule: s.n.scheduleToProto(res.Schedule)}, nil
}

func (s *scheduleService) ResumeSchedule(ctx context.Context, req *raftqv1.ResumeScheduleRequest) (*raftqv1.ResumeScheduleResponse, error) {
	if !s.n.isLeader() {
		return forward(ctx, s.n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ResumeScheduleResponse, error) {
			return raftqv1.NewSchedulesClient(c).ResumeSchedule(ctx, req)
		})
	}
	res, err := s.refCmd(ctx, req.Name, fsmpb.CommandType_COMMAND_TYPE_RESUME_SCHEDULE)
	if err != nil {
		return nil, err
	}
	return &raftqv1.ResumeScheduleResponse{Schedule: s.n.scheduleToProto(res.Schedule)}, nil
}

func (s *scheduleService) DeleteSchedule(ctx context.Context, req *raftqv1.DeleteScheduleRequest) (*raftqv1.DeleteScheduleResponse, error) {
	if !s.n.isLeader() {
		return forward(ctx, s.n, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.DeleteScheduleResponse, error) {
			return raftqv1.NewSchedulesClient(c).DeleteSchedule(ctx, req)
		})
	}
	if _, err := s.refCmd(ctx, req.Name, fsmpb.CommandType_COMMAND_TYPE_DELETE_SCHEDULE); err != nil {
		return nil, err
	}
	return &raftqv1.DeleteScheduleResponse{}, nil
}

// linearRead forwards a read to the leader or passes the read barrier,
// unless the caller accepts a stale answer.
func linearRead[T any](ctx context.Context, n *Node, c raftqv1.Consistency, call func(context.Context, *grpc.ClientConn) (T, error)) (T, bool, error) {
	var zero T
	if c == raftqv1.Consistency_CONSISTENCY_STALE {
		return zero, false, nil
	}
	if !n.isLeader() {
		out, err := forwardRead(ctx, n, call)
		return out, true, err
	}
	if err := n.readBarrier(ctx); err != nil {
		return zero, false, apierr.FromError(err)
	}
	return zero, false, nil
}

func (s *scheduleService) GetSchedule(ctx context.Context, req *raftqv1.GetScheduleRequest) (*raftqv1.GetScheduleResponse, error) {
	n := s.n
	if err := checkScheduleName(req.Name); err != nil {
		return nil, apierr.FromError(err)
	}
	out, done, err := linearRead(ctx, n, req.Consistency, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.GetScheduleResponse, error) {
		return raftqv1.NewSchedulesClient(c).GetSchedule(ctx, req)
	})
	if done || err != nil {
		return out, err
	}
	sc, ok := n.fsm.Schedule(req.Name)
	if !ok {
		return nil, apierr.FromError(fmt.Errorf("%w: %q", fsm.ErrScheduleNotFound, req.Name))
	}
	return &raftqv1.GetScheduleResponse{Schedule: n.scheduleToProto(sc)}, nil
}

func (s *scheduleService) ListSchedules(ctx context.Context, req *raftqv1.ListSchedulesRequest) (*raftqv1.ListSchedulesResponse, error) {
	n := s.n
	out, done, err := linearRead(ctx, n, req.Consistency, func(ctx context.Context, c *grpc.ClientConn) (*raftqv1.ListSchedulesResponse, error) {
		return raftqv1.NewSchedulesClient(c).ListSchedules(ctx, req)
	})
	if done || err != nil {
		return out, err
	}
	out = &raftqv1.ListSchedulesResponse{}
	for _, sc := range n.fsm.Schedules() {
		out.Schedules = append(out.Schedules, n.scheduleToProto(sc))
	}
	return out, nil
}
