package checker

import (
	"fmt"
	"time"
)

// CronState is what the harness reads at the end of a run about its
// periodic schedule (paused first, so the two reads agree): the
// schedule's own counters and every job it created.
type CronState struct {
	Schedule string `json:"schedule"`
	// Every is the schedule's period (it runs "@every <Every>").
	Every time.Duration `json:"every"`
	// CatchUp is its missed-tick policy: at most this many missed ticks
	// fire after an outage; the rest are counted in Skipped.
	CatchUp int `json:"catch_up"`
	// FirstTick (unix ns) is the schedule's first tick: the second after
	// it was created (an @every schedule ticks on whole seconds from
	// there).
	FirstTick int64 `json:"first_tick"`
	// Fired and Skipped are the schedule's counters; LastTick (unix ns)
	// its last tick.
	Fired    int64 `json:"fired"`
	Skipped  int64 `json:"skipped"`
	LastTick int64 `json:"last_tick"`
	// Jobs are the jobs the schedule created.
	Jobs []CronJob `json:"jobs"`
	// ReadAt (unix ns, the harness's clock) is when the schedule was
	// paused for the read; Err is set when it could not be read.
	ReadAt int64  `json:"read_at"`
	Err    string `json:"error,omitempty"`
}

// CronJob is one job created by a schedule tick.
type CronJob struct {
	ID   string `json:"id"`
	Tick int64  `json:"tick"` // unix ns
}

// cronStallLimit is how far behind the end of the run the schedule's last
// tick may be: more, and the scheduler stopped firing. It covers the
// broker's grace for late ticks (10 s) and an election.
const cronStallLimit = 30 * time.Second

// Cron checks exactly-once firing of a periodic schedule across the run's
// faults: one job per (schedule, tick), no duplicates; the ticks from the
// first to the last are each either one job or counted as skipped by the
// missed-tick policy, never both and never neither (a tick lost in a
// failover is "missed"); every job's tick is on the schedule's period;
// the schedule's counters agree with the jobs; and it was still firing at
// the end.
func Cron(s *CronState) Result {
	r := newResult("cron")
	if s == nil {
		r.Notes = append(r.Notes, "no cron state recorded (a run from before the cron workload)")
		return r
	}
	if s.Err != "" {
		r.fail(Failure{Msg: "schedule could not be read: " + s.Err})
		return r
	}
	every := int64(s.Every)
	if every <= 0 {
		r.fail(Failure{Msg: fmt.Sprintf("schedule period %s", s.Every)})
		return r
	}
	byTick := map[int64][]string{}
	dups, offPeriod := 0, 0
	for _, j := range s.Jobs {
		byTick[j.Tick] = append(byTick[j.Tick], j.ID)
		switch ids := byTick[j.Tick]; {
		case len(ids) > 1:
			dups++
			r.fail(Failure{Msg: fmt.Sprintf("tick %s has %d jobs: %v", fmtNS(j.Tick), len(ids), ids), JobID: j.ID})
		case j.Tick < s.FirstTick || j.Tick > s.LastTick || (j.Tick-s.FirstTick)%every != 0:
			offPeriod++
			r.fail(Failure{Msg: fmt.Sprintf("job %s has tick %s: not one of the schedule's ticks %s + k*%s up to %s",
				j.ID, fmtNS(j.Tick), fmtNS(s.FirstTick), s.Every, fmtNS(s.LastTick)), JobID: j.ID})
		}
	}
	var total int64
	if s.LastTick >= s.FirstTick && s.LastTick > 0 {
		total = (s.LastTick-s.FirstTick)/every + 1
	}
	r.Counts["ticks"] = int(total)
	r.Counts["jobs"] = len(s.Jobs)
	r.Counts["ticks_fired"] = len(byTick)
	r.Counts["duplicates"] = dups
	r.Counts["off_period"] = offPeriod
	r.Counts["skipped"] = int(s.Skipped)
	r.Counts["catch_up"] = s.CatchUp
	// Every tick from the first to the last is one job or skipped by the
	// policy: fewer means ticks were lost, more that a skipped tick fired.
	missed := total - int64(len(byTick)) - s.Skipped
	r.Counts["missed"] = int(max(missed, 0))
	switch {
	case missed > 0:
		r.fail(Failure{Msg: fmt.Sprintf("%d of %d ticks have no job and were not skipped by the policy (%d fired, %d skipped)", missed, total, len(byTick), s.Skipped)})
	case missed < 0:
		r.fail(Failure{Msg: fmt.Sprintf("%d ticks, but %d fired and %d skipped: a skipped tick fired, or a tick fired twice", total, len(byTick), s.Skipped)})
	}
	if s.Fired != int64(len(s.Jobs)) {
		r.fail(Failure{Msg: fmt.Sprintf("the schedule counts %d fired ticks, %d jobs exist", s.Fired, len(s.Jobs))})
	}
	if len(byTick) == 0 {
		r.fail(Failure{Msg: "the schedule never fired"})
	} else if s.LastTick < s.ReadAt-int64(cronStallLimit) {
		r.fail(Failure{Msg: fmt.Sprintf("the last tick (%s) is more than %s before the end of the run (%s): the schedule stopped firing",
			fmtNS(s.LastTick), cronStallLimit, fmtNS(s.ReadAt))})
	}
	return r
}

func fmtNS(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }
