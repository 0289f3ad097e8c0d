package workload

import (
	"context"
	"fmt"
	"time"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/jepsen/checker"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The cron workload: one periodic schedule, put once at the start of a
// run, fires through every fault; at the end it is paused and read back
// (its counters and every job it created) for checker.Cron. Nobody works
// its queue, so its jobs stay and each shows its tick.
const (
	CronSchedule = "jepsen-cron"
	CronQueue    = "jepsen-cron"
	// CronEvery is short so that a run has hundreds of ticks and every
	// fault lands around some.
	CronEvery = time.Second
	// CronCatchUp is small so that the missed-tick policy is exercised
	// too: an outage longer than the broker's grace skips ticks, which
	// the checker accounts for.
	CronCatchUp = 5
)

// SetupCron puts the schedule (retrying until the cluster answers or ctx
// ends) and returns its first tick (unix ns).
func SetupCron(ctx context.Context, addrs []string) (int64, error) {
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	spec := client.CronSchedule(CronSchedule, fmt.Sprintf("@every %s", CronEvery), client.NewJob(CronQueue, "tick", nil))
	spec.Overlap = raftqv1.OverlapPolicy_OVERLAP_POLICY_ALLOW
	spec.CatchUp = CronCatchUp
	for {
		s, _, err := cl.PutSchedule(ctx, spec)
		if err == nil {
			// An @every schedule ticks at creation + the period, on whole
			// seconds (robfig/cron drops the creation's fraction).
			return s.CreatedAt.AsTime().Truncate(time.Second).Add(CronEvery).UnixNano(), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("put schedule: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ReadCron pauses the schedule (so that its counters and jobs are read at
// one point) and reads them back from the leader, retrying until timeout.
// A failure is recorded in the state's Err, which the checker reports.
func ReadCron(addrs []string, firstTick int64, timeout time.Duration) *checker.CronState {
	st := &checker.CronState{Schedule: CronSchedule, Every: CronEvery, CatchUp: CronCatchUp, FirstTick: firstTick}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		st.Err = err.Error()
		return st
	}
	defer cl.Close()
	var lastErr error
	for ctx.Err() == nil {
		if lastErr = readCron(ctx, cl, st); lastErr == nil {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	st.Err = fmt.Sprint(lastErr)
	return st
}

func readCron(ctx context.Context, cl *client.Client, st *checker.CronState) error {
	st.ReadAt = time.Now().UnixNano()
	if _, err := cl.PauseSchedule(ctx, CronSchedule); err != nil {
		return err
	}
	s, err := cl.GetSchedule(ctx, CronSchedule, 0)
	if err != nil {
		return err
	}
	st.Fired, st.Skipped, st.Jobs = s.Fired, s.Skipped, nil
	if s.LastTick != nil {
		st.LastTick = s.LastTick.AsTime().UnixNano()
	}
	for state := raftqv1.JobState_JOB_STATE_SCHEDULED; state <= raftqv1.JobState_JOB_STATE_WAITING; state++ {
		after := ""
		for {
			page, err := cl.ListJobs(ctx, &raftqv1.ListJobsRequest{Queue: CronQueue, State: state, After: after, Limit: 1000})
			if err != nil {
				return err
			}
			for _, j := range page.Jobs {
				if j.Schedule == CronSchedule && j.ScheduleTick != nil {
					st.Jobs = append(st.Jobs, checker.CronJob{ID: j.Id, Tick: j.ScheduleTick.AsTime().UnixNano()})
				}
			}
			if page.NextAfter == "" {
				break
			}
			after = page.NextAfter
		}
	}
	return nil
}
