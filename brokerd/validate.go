package brokerd

import (
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// nameRE is the rule for queue and job type names: short, printable, safe
// in URLs, metric labels and file names.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", apierr.ErrInvalid, what)
	}
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%w: %s %q must match %s", apierr.ErrInvalid, what, s, nameRE)
	}
	return nil
}

func checkJobID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: job_id is empty", apierr.ErrInvalid)
	}
	if len(id) > 128 {
		return fmt.Errorf("%w: job_id longer than 128 bytes", apierr.ErrInvalid)
	}
	return nil
}

// newJobs validates an Enqueue request and stamps it into FSM jobs: ids,
// defaults and absolute times are chosen here, on the leader, so Apply has
// nothing left to decide.
func (n *Node) newJobs(req *raftqv1.EnqueueRequest, now time.Time) ([]*fsmpb.NewJob, error) {
	lim := n.cfg.Limits
	if len(req.Jobs) == 0 {
		return nil, fmt.Errorf("%w: no jobs in request", apierr.ErrInvalid)
	}
	if len(req.Jobs) > lim.MaxBatchJobs {
		return nil, fmt.Errorf("%w: %d jobs in one request, limit %d", apierr.ErrTooLarge, len(req.Jobs), lim.MaxBatchJobs)
	}
	total := 0
	out := make([]*fsmpb.NewJob, 0, len(req.Jobs))
	for i, s := range req.Jobs {
		bad := func(err error) error { return fmt.Errorf("job %d: %w", i, err) }
		// The node's defaults, or live config's for this queue (etcd.go).
		def := n.queueDefaults(s.Queue)
		if err := checkName("queue", s.Queue); err != nil {
			return nil, bad(err)
		}
		if err := checkName("type", s.Type); err != nil {
			return nil, bad(err)
		}
		if len(s.Payload) > lim.MaxPayloadBytes {
			return nil, bad(fmt.Errorf("%w: payload is %d bytes, limit %d", apierr.ErrTooLarge, len(s.Payload), lim.MaxPayloadBytes))
		}
		total += len(s.Payload)
		if total > lim.MaxBatchBytes {
			return nil, fmt.Errorf("%w: batch payloads exceed %d bytes", apierr.ErrTooLarge, lim.MaxBatchBytes)
		}
		if len(s.IdempotencyKey) > lim.MaxIdempotencyKey {
			return nil, bad(fmt.Errorf("%w: idempotency_key longer than %d bytes", apierr.ErrInvalid, lim.MaxIdempotencyKey))
		}
		if s.MaxAttempts < 0 || s.MaxAttempts > lim.MaxAttempts {
			return nil, bad(fmt.Errorf("%w: max_attempts %d outside 0..%d", apierr.ErrInvalid, s.MaxAttempts, lim.MaxAttempts))
		}
		runAt := now
		if s.Delay != nil && s.RunAt != nil {
			return nil, bad(fmt.Errorf("%w: delay and run_at are mutually exclusive", apierr.ErrInvalid))
		}
		if s.Delay != nil {
			if err := s.Delay.CheckValid(); err != nil || s.Delay.AsDuration() < 0 || s.Delay.AsDuration() > lim.MaxDelay {
				return nil, bad(fmt.Errorf("%w: delay must be between 0 and %s", apierr.ErrInvalid, lim.MaxDelay))
			}
			runAt = now.Add(s.Delay.AsDuration())
		}
		if s.RunAt != nil {
			if err := s.RunAt.CheckValid(); err != nil {
				return nil, bad(fmt.Errorf("%w: run_at: %v", apierr.ErrInvalid, err))
			}
			runAt = s.RunAt.AsTime()
			if runAt.After(now.Add(lim.MaxDelay)) {
				return nil, bad(fmt.Errorf("%w: run_at more than %s ahead", apierr.ErrInvalid, lim.MaxDelay))
			}
		}
		lease, err := durationOr(s.LeaseDuration, def.LeaseDuration)
		if err != nil || lease < lim.MinLeaseDuration || lease > lim.MaxLeaseDuration {
			return nil, bad(fmt.Errorf("%w: lease_duration must be between %s and %s", apierr.ErrInvalid, lim.MinLeaseDuration, lim.MaxLeaseDuration))
		}
		dedup, err := durationOr(s.DedupWindow, def.DedupWindow)
		if err != nil || dedup < 0 || dedup > lim.MaxDedupWindow {
			return nil, bad(fmt.Errorf("%w: dedup_window must be between 0 and %s", apierr.ErrInvalid, lim.MaxDedupWindow))
		}
		initial, maxB := def.InitialBackoff, def.MaxBackoff
		if s.Retry != nil {
			if initial, err = durationOr(s.Retry.InitialBackoff, def.InitialBackoff); err != nil || initial < 0 {
				return nil, bad(fmt.Errorf("%w: retry.initial_backoff must not be negative", apierr.ErrInvalid))
			}
			if maxB, err = durationOr(s.Retry.MaxBackoff, def.MaxBackoff); err != nil || maxB < initial {
				return nil, bad(fmt.Errorf("%w: retry.max_backoff must be >= initial_backoff", apierr.ErrInvalid))
			}
		}
		attempts := s.MaxAttempts
		if attempts == 0 {
			attempts = def.MaxAttempts
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		out = append(out, &fsmpb.NewJob{
			Id:             id.String(),
			Queue:          s.Queue,
			Type:           s.Type,
			Payload:        s.Payload,
			Priority:       s.Priority,
			RunAt:          runAt.UnixNano(),
			MaxAttempts:    attempts,
			LeaseDuration:  int64(lease),
			InitialBackoff: int64(initial),
			MaxBackoff:     int64(maxB),
			IdempotencyKey: s.IdempotencyKey,
			DedupWindow:    int64(dedup),
		})
	}
	return out, nil
}

// durationOr returns d, or def when d is unset or zero.
func durationOr(d *durationpb.Duration, def time.Duration) (time.Duration, error) {
	if d == nil {
		return def, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, err
	}
	if d.AsDuration() == 0 {
		return def, nil
	}
	return d.AsDuration(), nil
}
