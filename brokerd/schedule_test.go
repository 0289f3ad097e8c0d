package brokerd_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// scheduledTicks returns the ticks of the jobs the schedule created, as
// the leader's FSM holds them (every state), sorted, and fails on a tick
// with two jobs.
func scheduledTicks(t *testing.T, f *fsm.FSM, queue, schedule string) []int64 {
	t.Helper()
	seen := map[int64]string{}
	var ticks []int64
	for st := fsm.StateScheduled; st < fsm.NumStates; st++ {
		for _, j := range f.List(queue, st, "", 0) {
			if j.ScheduleName != schedule {
				continue
			}
			if other, dup := seen[j.ScheduleTick]; dup {
				t.Fatalf("tick %s has two jobs: %s and %s", time.Unix(0, j.ScheduleTick).UTC(), other, j.ID)
			}
			seen[j.ScheduleTick] = j.ID
			ticks = append(ticks, j.ScheduleTick)
		}
	}
	sort.Slice(ticks, func(i, k int) bool { return ticks[i] < ticks[k] })
	return ticks
}

// firedBy waits until the schedule has fired at least n ticks.
func firedBy(t *testing.T, c *testcluster.Cluster, name string, n int64, within time.Duration) {
	t.Helper()
	testutil.WaitFor(t, within, fmt.Sprintf("schedule %s to fire %d ticks", name, n), func() bool {
		l := c.Leader()
		if l == nil {
			return false
		}
		sc, ok := l.FSM().Schedule(name)
		return ok && sc.Fired >= n
	})
}

// The leader is killed three times while an @every 1s schedule runs: every
// tick from the first to the last has exactly one job (none duplicated by
// a new leader re-proposing it, none lost in a failover), and nothing was
// skipped.
func TestScheduleExactlyOncePerTickAcrossLeaderKills(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 120*time.Second)
	spec := client.CronSchedule("tick", "@every 1s", client.NewJob("cron", "beat", []byte("x")))
	spec.Overlap = raftqv1.OverlapPolicy_OVERLAP_POLICY_ALLOW
	spec.CatchUp = 10
	if _, changed, err := cl.PutSchedule(ctx, spec); err != nil || !changed {
		t.Fatalf("put: %v changed=%v", err, changed)
	}
	firedBy(t, c, "tick", 2, 20*time.Second)
	for i := 0; i < 3; i++ {
		old := c.Leader()
		c.Kill(old.ID())
		c.WaitLeader(30 * time.Second)
		c.Restart(old.ID())
		fired, _ := c.Leader().FSM().Schedule("tick")
		firedBy(t, c, "tick", fired.Fired+2, 30*time.Second)
	}
	if _, err := cl.PauseSchedule(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(20 * time.Second)
	l := c.Leader()
	ticks := scheduledTicks(t, l.FSM(), "cron", "tick")
	sc, _ := l.FSM().Schedule("tick")
	if int64(len(ticks)) != sc.Fired || sc.Skipped != 0 {
		t.Fatalf("%d jobs, schedule fired %d skipped %d", len(ticks), sc.Fired, sc.Skipped)
	}
	for i := 1; i < len(ticks); i++ {
		if d := time.Duration(ticks[i] - ticks[i-1]); d != time.Second {
			t.Fatalf("ticks %s and %s are %s apart: a tick was lost", time.Unix(0, ticks[i-1]).UTC(), time.Unix(0, ticks[i]).UTC(), d)
		}
	}
	if ticks[len(ticks)-1] != sc.LastTick {
		t.Fatalf("last job's tick %d, schedule's last tick %d", ticks[len(ticks)-1], sc.LastTick)
	}
	t.Logf("%d ticks, one job each, over 3 leader kills", len(ticks))
}

// Every node is down for several seconds. With catch_up 2, the leader
// that comes back fires the 2 most recent missed ticks and records the
// others as skipped: every tick from the first to the last is either one
// job or counted as skipped, never both, and the skipped ones are exactly
// the gap.
func TestScheduleMissedTicksAfterOutage(t *testing.T) {
	defer brokerd.SetScheduleGrace(time.Second)()
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 120*time.Second)
	spec := client.CronSchedule("beat", "@every 1s", client.NewJob("cron", "beat", nil))
	spec.Overlap = raftqv1.OverlapPolicy_OVERLAP_POLICY_ALLOW
	spec.CatchUp = 2
	if _, _, err := cl.PutSchedule(ctx, spec); err != nil {
		t.Fatal(err)
	}
	firedBy(t, c, "beat", 2, 20*time.Second)
	var ids []string
	for _, m := range c.Members() {
		ids = append(ids, m.ID)
		c.Kill(m.ID)
	}
	down := time.Now()
	time.Sleep(8 * time.Second)
	for _, id := range ids {
		c.Restart(id)
	}
	c.WaitLeader(30 * time.Second)
	testutil.WaitFor(t, 30*time.Second, "the ticks missed while down to be skipped", func() bool {
		l := c.Leader()
		if l == nil {
			return false
		}
		sc, _ := l.FSM().Schedule("beat")
		return sc.Skipped > 0 && time.Unix(0, sc.LastTick).After(down.Add(10*time.Second))
	})
	if _, err := cl.PauseSchedule(ctx, "beat"); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged(20 * time.Second)
	l := c.Leader()
	ticks := scheduledTicks(t, l.FSM(), "cron", "beat")
	sc, _ := l.FSM().Schedule("beat")
	span := (ticks[len(ticks)-1]-ticks[0])/int64(time.Second) + 1
	if int64(len(ticks)) != sc.Fired || sc.Fired+sc.Skipped != span {
		t.Fatalf("%d jobs, fired %d + skipped %d != %d ticks from first to last", len(ticks), sc.Fired, sc.Skipped, span)
	}
	// The skipped ticks are one gap, and the two ticks before the first
	// on-time one after the outage (its catch-up) fired.
	gaps := 0
	for i := 1; i < len(ticks); i++ {
		if d := ticks[i] - ticks[i-1]; d != int64(time.Second) {
			gaps++
			if d-int64(time.Second) != sc.Skipped*int64(time.Second) {
				t.Fatalf("gap of %s, %d skipped", time.Duration(d), sc.Skipped)
			}
			if i+1 >= len(ticks) || ticks[i+1]-ticks[i] != int64(time.Second) {
				t.Fatal("no caught-up tick after the gap")
			}
		}
	}
	if gaps != 1 || sc.Skipped < 2 {
		t.Fatalf("%d gaps, %d skipped (an 8s outage with catch_up 2 must skip some)", gaps, sc.Skipped)
	}
	t.Logf("%d fired, %d skipped over an 8s outage", sc.Fired, sc.Skipped)
}

// Every refusal is a clear InvalidArgument (or NotFound) and changes
// nothing; put, get, list, pause, resume and delete work through any node.
func TestScheduleAPI(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	cl := c.Client()
	ctx := testutil.Context(t, 60*time.Second)
	job := func() *raftqv1.JobSpec { return client.NewJob("q", "t", nil) }
	before := c.WaitConverged(10 * time.Second)
	for name, spec := range map[string]*raftqv1.ScheduleSpec{
		"bad cron expression":  client.CronSchedule("s", "61 * * * *", job()),
		"unknown time_zone":    {Name: "s", Cron: "@hourly", TimeZone: "Mars/Olympus", Job: job()},
		"Local":                {Name: "s", Cron: "@hourly", TimeZone: "Local", Job: job()},
		"queue":                client.CronSchedule("s", "@hourly", client.NewJob("", "t", nil)),
		"jitter":               {Name: "s", Cron: "@hourly", Jitter: durationpb.New(-time.Second), Job: job()},
		"catch_up":             {Name: "s", Cron: "@hourly", CatchUp: 1001, Job: job()},
		"catch_up -1":          {Name: "s", Cron: "@hourly", CatchUp: -1, Job: job()},
		"mutually exclusive":   {Name: "s", Cron: "@hourly", Interval: durationpb.New(time.Minute), Job: job()},
		"one of cron":          {Name: "s", Job: job()},
		"interval must be":     client.IntervalSchedule("s", time.Millisecond, job()),
		"@every must be":       client.CronSchedule("s", "@every 10ms", job()),
		"schedule name":        client.CronSchedule("", "@hourly", job()),
		"job is required":      {Name: "s", Cron: "@hourly"},
		"idempotency_key must": {Name: "s", Cron: "@hourly", Job: client.NewJob("q", "t", nil, client.WithIdempotencyKey("k"))},
		"TZ= prefix":           client.CronSchedule("s", "CRON_TZ=UTC 0 * * * *", job()),
		"overlap policy":       {Name: "s", Cron: "@hourly", Overlap: 9, Job: job()},
		"unique_key, job.unique_mode and job.schedule_to_start are not supported": {Name: "s", Cron: "@hourly",
			Job: client.NewJob("q", "t", nil, client.WithUniqueKey("u", client.UniqueReject))},
		"job.schedule_to_start are not supported": {Name: "s", Cron: "@hourly",
			Job: client.NewJob("q", "t", nil, client.WithScheduleToStart(time.Minute))},
		"start_to_close 1s is shorter": {Name: "s", Cron: "@hourly",
			Job: client.NewJob("q", "t", nil, client.WithLeaseDuration(time.Minute), client.WithStartToClose(time.Second))},
	} {
		_, _, err := cl.PutSchedule(ctx, spec)
		if status.Code(err) != codes.InvalidArgument || !containsFold(status.Convert(err).Message(), name) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	for _, err := range []error{
		func() error { _, err := cl.PauseSchedule(ctx, "nope"); return err }(),
		func() error { _, err := cl.GetSchedule(ctx, "nope", 0); return err }(),
		cl.DeleteSchedule(ctx, "nope"),
	} {
		if status.Code(err) != codes.NotFound {
			t.Errorf("unknown schedule: %v", err)
		}
	}
	if after := c.WaitConverged(10 * time.Second); after != before {
		t.Fatal("a refused request changed the state")
	}

	spec := client.CronSchedule("nightly", "30 2 * * *", job())
	spec.TimeZone = "Europe/Paris"
	spec.Jitter = durationpb.New(time.Minute)
	s, changed, err := cl.PutSchedule(ctx, spec)
	if err != nil || !changed || s.NextTick == nil || s.Spec.Job.MaxAttempts == 0 {
		t.Fatalf("put: %v %v %v", s, changed, err)
	}
	loc, _ := time.LoadLocation("Europe/Paris")
	if nt := s.NextTick.AsTime().In(loc); nt.Hour() != 2 || nt.Minute() != 30 {
		t.Fatalf("next tick %s, want 02:30 Paris time", nt)
	}
	if _, changed, err := cl.PutSchedule(ctx, spec); err != nil || changed {
		t.Fatalf("same put again: changed=%v %v", changed, err)
	}
	if s, err := cl.PauseSchedule(ctx, "nightly"); err != nil || !s.Spec.Paused || s.NextTick != nil {
		t.Fatalf("pause: %v %v", s, err)
	}
	if s, err := cl.ResumeSchedule(ctx, "nightly"); err != nil || s.Spec.Paused {
		t.Fatalf("resume: %v %v", s, err)
	}
	// Through a follower, stale read.
	var follower string
	for _, n := range c.Up() {
		if !n.IsLeaderReady() {
			follower = n.GRPCAddr()
		}
	}
	fc, err := client.New([]string{follower}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	c.WaitConverged(10 * time.Second)
	list, err := fc.ListSchedules(ctx, raftqv1.Consistency_CONSISTENCY_STALE)
	if err != nil || len(list) != 1 || list[0].Spec.Name != "nightly" || list[0].Spec.TimeZone != "Europe/Paris" {
		t.Fatalf("list: %v %v", list, err)
	}
	if err := fc.DeleteSchedule(ctx, "nightly"); err != nil {
		t.Fatal(err)
	}
	if list, err := cl.ListSchedules(ctx, 0); err != nil || len(list) != 0 {
		t.Fatalf("after delete: %v %v", list, err)
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// With auth on, only admins manage or read schedules; a refused call
// changes nothing; an admin's put through a follower is audited on the
// leader with the schedule's name.
func TestScheduleAuth(t *testing.T) {
	s := newSecureCluster(t)
	ctx := testutil.Context(t, 60*time.Second)
	f := s.follower()
	producer, worker, adm := s.client(t, producerTok, f.GRPCAddr()), s.client(t, workerTok, f.GRPCAddr()), s.client(t, adminTok, f.GRPCAddr())
	hash := s.c.WaitConverged(20 * time.Second)
	sp := client.CronSchedule("orders-hourly", "@hourly", spec("orders.eu"))
	_, _, err := producer.PutSchedule(ctx, sp)
	wantCode(t, "producer putting a schedule", err, codes.PermissionDenied)
	_, err = worker.ListSchedules(ctx, 0)
	wantCode(t, "worker listing schedules", err, codes.PermissionDenied)
	_, err = producer.PauseSchedule(ctx, "orders-hourly")
	wantCode(t, "producer pausing a schedule", err, codes.PermissionDenied)
	for _, n := range s.c.Up() {
		if n.FSM().Hash() != hash {
			t.Fatalf("a refused call changed %s's state", n.ID())
		}
	}
	if _, _, err := adm.PutSchedule(ctx, sp); err != nil {
		t.Fatalf("admin put through a follower: %v", err)
	}
	if list, err := adm.ListSchedules(ctx, 0); err != nil || len(list) != 1 {
		t.Fatalf("admin list: %v %v", list, err)
	}
	wantAudit(t, s, map[string]any{"principal": "token:ops", "method": "/raftq.v1.Schedules/PutSchedule", "code": "OK", "schedule": "orders-hourly", "outcome": "ok"})
	wantAudit(t, s, map[string]any{"principal": "token:ingest", "method": "/raftq.v1.Schedules/PutSchedule", "code": "PermissionDenied", "outcome": "refused"})
}
