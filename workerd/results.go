package workerd

import (
	"context"
	"errors"
	"fmt"

	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/worker"
)

// ResultsRecorder stores each attempt's outcome in svcd, fenced by the
// job's lease token, before the worker acks or nacks. svcd keeps one result
// per job: a stale token is refused (the worker then drops the attempt
// without acking: someone else holds the job), as is a job the broker no
// longer knows, and a job an earlier lease already completed is reported
// so the worker acks instead of retrying. Any other error (svcd or the
// broker it verifies with unreachable, a refusal) is retried by the worker
// until its settle timeout, then the ack becomes a nack: never an ack
// without a stored result.
type ResultsRecorder struct {
	// Client is a dialled results client.
	Client *results.Client
}

// Record implements worker.Recorder.
func (r ResultsRecorder) Record(ctx context.Context, o worker.Outcome) (bool, error) {
	var st results.Status
	switch o.Status {
	case worker.StatusSucceeded:
		st = results.StatusSucceeded
	case worker.StatusFailed:
		st = results.StatusFailed
	case worker.StatusDead, worker.StatusCancelled:
		// A cancelled job's attempt ends without success and is not
		// retried: for the system of record that is a permanent failure.
		st = results.StatusDead
	default:
		return false, fmt.Errorf("workerd: unknown outcome status %v", o.Status)
	}
	out, err := r.Client.StoreResult(ctx, results.Result{
		JobID:      o.JobID,
		Queue:      o.Queue,
		Type:       o.Type,
		LeaseToken: o.LeaseToken,
		WorkerID:   o.WorkerID,
		Attempt:    o.Attempt,
		Status:     st,
		Output:     o.Output,
		Error:      o.Error,
		StartedAt:  o.StartedAt,
		FinishedAt: o.FinishedAt,
	})
	if errors.Is(err, results.ErrStaleToken) {
		return false, fmt.Errorf("%w: svcd holds a newer lease's result, or the broker a newer lease: %v", worker.ErrLeaseLost, err)
	}
	if errors.Is(err, results.ErrUnknownJob) {
		return false, fmt.Errorf("%w: %v", worker.ErrLeaseLost, err)
	}
	if err != nil {
		return false, err
	}
	return out == results.OutcomeAlreadySucceeded, nil
}
