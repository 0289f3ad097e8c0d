package checker

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// cronRun is a schedule whose ticks 0..n-1 (seconds after t0) fired,
// except those in missing; skipped is its skip counter.
func cronRun(n int, missing map[int]bool, skipped int64) *CronState {
	const t0 = int64(1_700_000_000) * int64(time.Second)
	s := &CronState{Schedule: "s", Every: time.Second, CatchUp: 5, FirstTick: t0, Skipped: skipped,
		LastTick: t0 + int64(n-1)*int64(time.Second), ReadAt: t0 + int64(n)*int64(time.Second)}
	for i := 0; i < n; i++ {
		if !missing[i] {
			s.Jobs = append(s.Jobs, CronJob{ID: fmt.Sprintf("j%d", i), Tick: t0 + int64(i)*int64(time.Second)})
		}
	}
	s.Fired = int64(len(s.Jobs))
	return s
}

func TestCronChecker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state func() *CronState
		valid bool
		want  string // in a failure message
	}{
		{"every tick one job", func() *CronState { return cronRun(100, nil, 0) }, true, ""},
		{"skipped ticks counted", func() *CronState { return cronRun(100, map[int]bool{40: true, 41: true, 99: true}, 3) }, true, ""},
		{"lost tick", func() *CronState { return cronRun(100, map[int]bool{40: true}, 0) }, false, "not skipped"},
		{"skipped tick fired", func() *CronState { return cronRun(100, nil, 2) }, false, "a skipped tick fired"},
		{"duplicate", func() *CronState {
			s := cronRun(100, nil, 0)
			s.Jobs = append(s.Jobs, CronJob{ID: "dup", Tick: s.Jobs[7].Tick})
			s.Fired++
			return s
		}, false, "has 2 jobs"},
		{"off period", func() *CronState {
			s := cronRun(100, nil, 0)
			s.Jobs[5].Tick += int64(time.Millisecond)
			return s
		}, false, "not one of the schedule's ticks"},
		{"counter disagrees", func() *CronState { s := cronRun(10, nil, 0); s.Fired = 11; return s }, false, "fired ticks"},
		{"stopped firing", func() *CronState { s := cronRun(10, nil, 0); s.ReadAt += int64(time.Minute); return s }, false, "stopped firing"},
		{"never fired", func() *CronState { s := cronRun(1, map[int]bool{0: true}, 1); return s }, false, "never fired"},
		{"unreadable", func() *CronState { return &CronState{Err: "no leader"} }, false, "could not be read"},
	} {
		r := Cron(tc.state())
		if r.Valid != tc.valid {
			t.Errorf("%s: valid=%v, want %v: %+v", tc.name, r.Valid, tc.valid, r.Failures)
			continue
		}
		if tc.want != "" {
			found := false
			for _, f := range r.Failures {
				found = found || strings.Contains(f.Msg, tc.want)
			}
			if !found {
				t.Errorf("%s: no failure mentions %q: %+v", tc.name, tc.want, r.Failures)
			}
		}
	}
	if r := Cron(nil); !r.Valid || len(r.Notes) == 0 {
		t.Errorf("no state: %+v", r)
	}
}
