package client

import (
	"context"
	"fmt"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Workflows: jobs that wait for other jobs. A job with parents is created
// waiting (JOB_STATE_WAITING) and becomes ready once every parent
// succeeded; if a parent ends dead or cancelled it is cancelled too (and
// its own dependants after it), unless it was given RunAnyway. An Enqueue
// whose jobs name each other (WithName, DependsOnNames) is applied all or
// nothing: a cycle, an unknown parent, a job depending on itself or more
// than 64 parents refuses the whole call with InvalidArgument naming the
// job, and nothing is created.

// WithName names the job within one Enqueue call, so that other jobs of
// the same call can depend on it (DependsOnNames) before it has an id.
// Names are unique within the call, at most 128 bytes of printable UTF-8.
func WithName(name string) JobOption { return func(s *raftqv1.JobSpec) { s.Name = name } }

// DependsOn makes the job wait for existing jobs (by id): it runs once
// they all succeeded. Parents that are already finished count at once.
func DependsOn(ids ...string) JobOption {
	return func(s *raftqv1.JobSpec) { s.DependsOn = append(s.DependsOn, ids...) }
}

// DependsOnNames makes the job wait for jobs of the same Enqueue call,
// by their WithName names.
func DependsOnNames(names ...string) JobOption {
	return func(s *raftqv1.JobSpec) { s.DependsOnNames = append(s.DependsOnNames, names...) }
}

// RunAnyway makes the job run once every parent has finished, whatever
// the outcome, instead of being cancelled when a parent ends dead or
// cancelled (the default). The worker sees Job.ParentFailed.
func RunAnyway() JobOption {
	return func(s *raftqv1.JobSpec) {
		s.DependencyPolicy = raftqv1.DependencyPolicy_DEPENDENCY_POLICY_RUN_ANYWAY
	}
}

// Chain links jobs into a sequence, in place: each depends on the one
// before it (b on a, c on b), and a failure cancels the rest. Jobs without
// a name are named "chain-<i>" (give names when one Enqueue holds two
// chains). Pass the result to Enqueue, alone or with other jobs:
//
//	c.Enqueue(ctx, client.Chain(a, b, c)...)
func Chain(jobs ...*raftqv1.JobSpec) []*raftqv1.JobSpec {
	for i, j := range jobs {
		if j.Name == "" {
			j.Name = fmt.Sprintf("chain-%d", i)
		}
		if i > 0 {
			j.DependsOnNames = append(j.DependsOnNames, jobs[i-1].Name)
		}
	}
	return jobs
}

// Batch is a group of jobs with callbacks: OnSuccess jobs run once every
// job of the batch succeeded (they are cancelled if one fails), OnComplete
// jobs once every job of the batch has finished, whatever the outcome.
// Jobs of the batch without a name are named "<name>/<i>".
type Batch struct {
	Name       string
	Jobs       []*raftqv1.JobSpec
	OnSuccess  []*raftqv1.JobSpec
	OnComplete []*raftqv1.JobSpec
}

// Specs returns the batch's jobs and callbacks linked for one Enqueue
// call (it sets names and dependencies in place):
//
//	c.Enqueue(ctx, (&client.Batch{Name: "import", Jobs: parts,
//		OnSuccess: []*raftqv1.JobSpec{report}}).Specs()...)
func (b *Batch) Specs() []*raftqv1.JobSpec {
	var names []string
	for i, j := range b.Jobs {
		if j.Name == "" {
			j.Name = fmt.Sprintf("%s/%d", b.Name, i)
		}
		names = append(names, j.Name)
	}
	out := append([]*raftqv1.JobSpec(nil), b.Jobs...)
	for _, cb := range b.OnSuccess {
		cb.DependsOnNames = append(cb.DependsOnNames, names...)
		out = append(out, cb)
	}
	for _, cb := range b.OnComplete {
		cb.DependsOnNames = append(cb.DependsOnNames, names...)
		cb.DependencyPolicy = raftqv1.DependencyPolicy_DEPENDENCY_POLICY_RUN_ANYWAY
		out = append(out, cb)
	}
	return out
}

// Parents returns the jobs jobID depends on, in its parents' order (a
// parent purged since is left out), so a worker or a producer can read
// their results (results.Client.ParentResults) or states.
func (c *Client) Parents(ctx context.Context, jobID string) ([]*raftqv1.Job, error) {
	j, err := c.GetJob(ctx, jobID, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	var out []*raftqv1.Job
	for _, p := range j.GetParents() {
		pj, err := c.GetJob(ctx, p, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, pj)
	}
	return out, nil
}
