package brokerd

import (
	"testing"
	"time"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
)

func mustTicker(t *testing.T, sp *fsmpb.ScheduleSpec, anchor time.Time) *ticker {
	t.Helper()
	tk, err := newTicker(&fsm.Schedule{Spec: sp, Anchor: anchor.UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// TestTickerDue: due ticks split at the grace into missed (the last keep
// kept, all counted) and on time, for evenly spaced and walked schedules.
func TestTickerDue(t *testing.T) {
	base := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		sp   *fsmpb.ScheduleSpec
		step time.Duration
	}{
		{"@every", &fsmpb.ScheduleSpec{Cron: "@every 1s"}, time.Second},
		{"interval", &fsmpb.ScheduleSpec{Interval: int64(time.Second)}, time.Second},
		{"cron walk", &fsmpb.ScheduleSpec{Cron: "* * * * *"}, time.Minute},
	} {
		tk := mustTicker(t, tc.sp, base)
		now := base.Add(20*tc.step + tc.step/2)
		missed, total, onTime := tk.due(base, now.Add(-10*tc.step), now, 3)
		if total != 10 || len(missed) != 3 || !missed[0].Equal(base.Add(8*tc.step)) || !missed[2].Equal(base.Add(10*tc.step)) {
			t.Fatalf("%s: missed %v of %d", tc.name, missed, total)
		}
		if len(onTime) != 10 || !onTime[0].Equal(base.Add(11*tc.step)) || !onTime[9].Equal(base.Add(20*tc.step)) {
			t.Fatalf("%s: on time %v", tc.name, onTime)
		}
		if m, n, o := tk.due(base.Add(20*tc.step), now.Add(-10*tc.step), now, 3); len(m)+len(o) != 0 || n != 0 {
			t.Fatalf("%s: nothing due after the last tick, got %v %d %v", tc.name, m, n, o)
		}
	}
	// An interval counts from the anchor, not from whole seconds.
	odd := base.Add(123 * time.Millisecond)
	tk := mustTicker(t, &fsmpb.ScheduleSpec{Interval: int64(time.Minute)}, odd)
	if nx := tk.next(odd.Add(30 * time.Second)); !nx.Equal(odd.Add(time.Minute)) {
		t.Fatalf("interval next %s", nx)
	}
	// A cron expression is read in the schedule's zone.
	tk = mustTicker(t, &fsmpb.ScheduleSpec{Cron: "30 2 * * *", TimeZone: "America/New_York"}, base)
	ny, _ := time.LoadLocation("America/New_York")
	if nx := tk.next(base).In(ny); nx.Hour() != 2 || nx.Minute() != 30 || nx.Day() != 6 {
		t.Fatalf("cron next in New York: %s", nx)
	}
}

func TestTickJitterDeterministicAndBounded(t *testing.T) {
	tick := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	if tickJitter("s", tick, 0) != 0 {
		t.Fatal("jitter without a bound")
	}
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		tk := tick.Add(time.Duration(i) * time.Second)
		j := tickJitter("s", tk, time.Minute)
		if j < 0 || j >= time.Minute || j != tickJitter("s", tk, time.Minute) {
			t.Fatalf("jitter %s", j)
		}
		seen[j] = true
	}
	if len(seen) < 90 {
		t.Fatalf("only %d distinct jitters of 100 ticks", len(seen))
	}
}
