package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Periodic schedules (the Schedules service; every call needs the admin
// role). The cluster fires each tick of a schedule as one Raft command
// keyed by (schedule, tick), so exactly one job exists per tick across
// leader changes.

// CronSchedule is a ScheduleSpec firing job on a cron expression (5 fields
// or a descriptor such as "@hourly" or "@every 30s") in UTC; set TimeZone,
// Jitter, Overlap and CatchUp on the result as needed.
func CronSchedule(name, expr string, job *raftqv1.JobSpec) *raftqv1.ScheduleSpec {
	return &raftqv1.ScheduleSpec{Name: name, Cron: expr, Job: job}
}

// IntervalSchedule is a ScheduleSpec firing job every d (at least 1s).
func IntervalSchedule(name string, d time.Duration, job *raftqv1.JobSpec) *raftqv1.ScheduleSpec {
	return &raftqv1.ScheduleSpec{Name: name, Interval: durationpb.New(d), Job: job}
}

// PutSchedule creates a schedule or replaces its definition; its firing
// state stays (an update never fires a tick twice). changed is false when
// the same definition was already in place. Putting the same spec again
// is harmless, so a retry after an indeterminate error is safe.
func (c *Client) PutSchedule(ctx context.Context, spec *raftqv1.ScheduleSpec) (s *raftqv1.Schedule, changed bool, err error) {
	var resp *raftqv1.PutScheduleResponse
	err = c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewSchedulesClient(cc).PutSchedule(ctx, &raftqv1.PutScheduleRequest{Schedule: spec})
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return resp.Schedule, resp.Changed, nil
}

// GetSchedule returns one schedule with its firing state and next tick.
func (c *Client) GetSchedule(ctx context.Context, name string, consistency raftqv1.Consistency) (*raftqv1.Schedule, error) {
	var resp *raftqv1.GetScheduleResponse
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewSchedulesClient(cc).GetSchedule(ctx, &raftqv1.GetScheduleRequest{Name: name, Consistency: consistency})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Schedule, nil
}

// ListSchedules returns every schedule, sorted by name.
func (c *Client) ListSchedules(ctx context.Context, consistency raftqv1.Consistency) ([]*raftqv1.Schedule, error) {
	var resp *raftqv1.ListSchedulesResponse
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewSchedulesClient(cc).ListSchedules(ctx, &raftqv1.ListSchedulesRequest{Consistency: consistency})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Schedules, nil
}

// PauseSchedule stops a schedule from firing; ticks while paused never
// fire.
func (c *Client) PauseSchedule(ctx context.Context, name string) (*raftqv1.Schedule, error) {
	var resp *raftqv1.PauseScheduleResponse
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewSchedulesClient(cc).PauseSchedule(ctx, &raftqv1.PauseScheduleRequest{Name: name})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Schedule, nil
}

// ResumeSchedule fires a paused schedule again, from its next tick after
// now.
func (c *Client) ResumeSchedule(ctx context.Context, name string) (*raftqv1.Schedule, error) {
	var resp *raftqv1.ResumeScheduleResponse
	err := c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = raftqv1.NewSchedulesClient(cc).ResumeSchedule(ctx, &raftqv1.ResumeScheduleRequest{Name: name})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Schedule, nil
}

// DeleteSchedule removes a schedule; the jobs it created stay.
func (c *Client) DeleteSchedule(ctx context.Context, name string) error {
	return c.do(ctx, 0, func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := raftqv1.NewSchedulesClient(cc).DeleteSchedule(ctx, &raftqv1.DeleteScheduleRequest{Name: name})
		return err
	})
}
