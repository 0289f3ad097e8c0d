package brokerd

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// This file is the one place where the gRPC API's requests are checked
// against the node's Limits, before anything is proposed or parked. Each
// validateX is a pure function of the request and the limits (the fuzz
// tests call them directly); errors wrap apierr.ErrInvalid or
// apierr.ErrTooLarge and name the field. Transport limits (message and
// header sizes, deadlines, long polls per connection) are in security.go
// and internal/limits; who may call what is internal/auth.

// Fixed bounds that are not worth a setting.
const (
	maxJobIDBytes    = 128
	maxWorkerIDBytes = 256
	maxFetchQueues   = 64
	maxNackErrBytes  = 64 << 10
	maxIDList        = 100000 // job ids in one redrive or purge
	maxListJobs      = 1000
	defaultListJobs  = 100
	maxNodeIDBytes   = 128
	maxAddrBytes     = 256
)

func checkName(what, s string) error {
	if err := limits.CheckName(what, s); err != nil {
		return fmt.Errorf("%w: %v", apierr.ErrInvalid, err)
	}
	return nil
}

func validateQueue(q string) error { return checkName("queue", q) }

func checkJobID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: job_id is empty", apierr.ErrInvalid)
	}
	if len(id) > maxJobIDBytes {
		return fmt.Errorf("%w: job_id longer than %d bytes", apierr.ErrInvalid, maxJobIDBytes)
	}
	return nil
}

// newJobs validates an Enqueue request and stamps it into FSM jobs: ids,
// defaults and absolute times are chosen here, on the leader, so Apply has
// nothing left to decide.
func (n *Node) newJobs(ctx context.Context, req *raftqv1.EnqueueRequest, now time.Time) ([]*fsmpb.NewJob, error) {
	// The node's defaults, or live config's for the queue (Config.Queues).
	jobs, err := validateEnqueue(n.cfg.Limits, n.queueDefaults, req, now)
	if err != nil || !n.multi() {
		return jobs, err
	}
	// Several groups: every job must be for a queue of this group, and
	// its id names the group, so that any node routes calls about the job
	// (Ack, GetJob, ...) without a lookup.
	for _, j := range jobs {
		if err := n.ownsQueue(ctx, j.GetQueue()); err != nil {
			return nil, err
		}
		j.Id = placement.JobID(j.GetId(), n.cfg.group)
	}
	return jobs, nil
}

// validateEnqueue checks an Enqueue request against lim and stamps its
// jobs with ids, defaults (defaults(queue)) and absolute times.
func validateEnqueue(lim Limits, defaults func(queue string) Defaults, req *raftqv1.EnqueueRequest, now time.Time) ([]*fsmpb.NewJob, error) {
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
		if s == nil {
			return nil, bad(fmt.Errorf("%w: empty job", apierr.ErrInvalid))
		}
		if err := checkName("queue", s.Queue); err != nil {
			return nil, bad(err)
		}
		if err := checkName("type", s.Type); err != nil {
			return nil, bad(err)
		}
		def := defaults(s.Queue)
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
		if err := checkConcurrencyKey(s.ConcurrencyKey, lim.MaxIdempotencyKey); err != nil {
			return nil, bad(err)
		}
		if len(s.TraceParent) > maxTraceField || len(s.TraceState) > maxTraceField {
			return nil, bad(fmt.Errorf("%w: trace_parent and trace_state take at most %d bytes each", apierr.ErrInvalid, maxTraceField))
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
			// Far in the past is a mistake too, and before 1678 it would
			// not even fit the FSM's int64 nanoseconds (found by
			// FuzzValidateRequests' bounds check: year 1 became 1754).
			if runAt.Before(now.Add(-lim.MaxDelay)) {
				return nil, bad(fmt.Errorf("%w: run_at more than %s ago", apierr.ErrInvalid, lim.MaxDelay))
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
		startDeadline, stc, err := checkTimeouts(lim, s, lease, now, runAt)
		if err != nil {
			return nil, bad(err)
		}
		uniqueMode, err := checkUnique(lim, s)
		if err != nil {
			return nil, bad(err)
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
			ConcurrencyKey: s.ConcurrencyKey,
			TraceParent:    s.TraceParent,
			TraceState:     s.TraceState,
			StartDeadline:  startDeadline,
			StartToClose:   int64(stc),
			UniqueKey:      s.UniqueKey,
			UniqueMode:     uniqueMode,
		})
	}
	return out, nil
}

// checkTimeouts validates a job's schedule_to_start and start_to_close
// and returns the absolute start deadline (0: none; counted from when the
// job is due, now or its run_at) and the start-to-close duration (0: none).
// A start_to_close shorter than the lease would fail attempts before their
// first lease extension is due, which is a mistake, not a timeout.
func checkTimeouts(lim Limits, s *raftqv1.JobSpec, lease time.Duration, now, runAt time.Time) (int64, time.Duration, error) {
	var deadline int64
	if d := s.ScheduleToStart; d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 || d.AsDuration() > lim.MaxDelay {
			return 0, 0, fmt.Errorf("%w: schedule_to_start must be between 0 and %s", apierr.ErrInvalid, lim.MaxDelay)
		}
		if d.AsDuration() > 0 {
			due := now
			if runAt.After(now) {
				due = runAt
			}
			deadline = due.Add(d.AsDuration()).UnixNano()
		}
	}
	var stc time.Duration
	if d := s.StartToClose; d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 || d.AsDuration() > lim.MaxDelay {
			return 0, 0, fmt.Errorf("%w: start_to_close must be between 0 and %s", apierr.ErrInvalid, lim.MaxDelay)
		}
		stc = d.AsDuration()
		if stc > 0 && stc < lease {
			return 0, 0, fmt.Errorf("%w: start_to_close %s is shorter than the job's lease duration %s", apierr.ErrInvalid, stc, lease)
		}
	}
	return deadline, stc, nil
}

// checkUnique validates a job's unique key and mode and returns the FSM's
// mode (fsm.Unique*).
func checkUnique(lim Limits, s *raftqv1.JobSpec) (int32, error) {
	if s.UniqueKey == "" {
		if s.UniqueMode != raftqv1.UniqueMode_UNIQUE_MODE_UNSPECIFIED {
			return 0, fmt.Errorf("%w: unique_mode needs a unique_key", apierr.ErrInvalid)
		}
		return 0, nil
	}
	if err := checkPrintableKey("unique_key", s.UniqueKey, lim.MaxIdempotencyKey); err != nil {
		return 0, err
	}
	switch s.UniqueMode {
	case raftqv1.UniqueMode_UNIQUE_MODE_UNSPECIFIED, raftqv1.UniqueMode_UNIQUE_MODE_RETURN_EXISTING:
		return fsm.UniqueReturnExisting, nil
	case raftqv1.UniqueMode_UNIQUE_MODE_REJECT:
		return fsm.UniqueReject, nil
	case raftqv1.UniqueMode_UNIQUE_MODE_DEBOUNCE:
		return fsm.UniqueDebounce, nil
	}
	return 0, fmt.Errorf("%w: unknown unique_mode %d", apierr.ErrInvalid, s.UniqueMode)
}

// maxTraceField bounds JobSpec.trace_parent and trace_state: a W3C
// traceparent is 55 bytes and tracestate is capped at 512 by the spec, so
// anything longer is not a trace context and would only bloat the job.
const maxTraceField = 512

// checkConcurrencyKey refuses a concurrency key longer than max bytes
// (the idempotency key's limit) or not printable UTF-8: keys show up in
// the CLI, the dashboard and logs.
func checkConcurrencyKey(key string, max int) error {
	return checkPrintableKey("concurrency_key", key, max)
}

// checkPrintableKey refuses a key field longer than max bytes or not
// printable UTF-8.
func checkPrintableKey(field, key string, max int) error {
	if len(key) > max {
		return fmt.Errorf("%w: %s longer than %d bytes", apierr.ErrInvalid, field, max)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("%w: %s is not valid UTF-8", apierr.ErrInvalid, field)
	}
	for _, r := range key {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %s has a non-printable character %U", apierr.ErrInvalid, field, r)
		}
	}
	return nil
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

// validateFetch checks a Fetch and turns it into the dispatcher's
// request (queues deduplicated, max_jobs defaulted to 1).
func validateFetch(lim Limits, req *raftqv1.FetchRequest) (dispatch.FetchRequest, error) {
	fr := dispatch.FetchRequest{Max: int(req.MaxJobs), WorkerID: req.WorkerId}
	queues := req.Queues
	if len(queues) == 0 && len(req.QueueWeights) > 0 {
		queues = slices.Sorted(maps.Keys(req.QueueWeights))
	}
	if len(queues) == 0 || len(queues) > maxFetchQueues {
		return fr, fmt.Errorf("%w: fetch needs 1 to %d queues", apierr.ErrInvalid, maxFetchQueues)
	}
	seen := map[string]bool{}
	for _, q := range queues {
		if err := checkName("queue", q); err != nil {
			return fr, err
		}
		if !seen[q] {
			seen[q] = true
			fr.Queues = append(fr.Queues, q)
		}
	}
	if len(req.QueueWeights) > 0 {
		fr.Weights = make([]int, len(fr.Queues))
		for i, q := range fr.Queues {
			w, ok := req.QueueWeights[q]
			if !ok {
				return fr, fmt.Errorf("%w: queue_weights has no weight for queue %q", apierr.ErrInvalid, q)
			}
			if w < 1 || w > maxQueueWeight {
				return fr, fmt.Errorf("%w: queue_weights[%q] is %d, must be between 1 and %d", apierr.ErrInvalid, q, w, maxQueueWeight)
			}
			fr.Weights[i] = int(w)
		}
		for q := range req.QueueWeights {
			if !seen[q] {
				return fr, fmt.Errorf("%w: queue_weights names %q, which is not among the queues", apierr.ErrInvalid, q)
			}
		}
	}
	if fr.Max == 0 {
		fr.Max = 1
	}
	if fr.Max < 0 || fr.Max > lim.MaxFetchJobs {
		return fr, fmt.Errorf("%w: max_jobs must be between 1 and %d", apierr.ErrInvalid, lim.MaxFetchJobs)
	}
	if len(fr.WorkerID) > maxWorkerIDBytes {
		return fr, fmt.Errorf("%w: worker_id longer than %d bytes", apierr.ErrInvalid, maxWorkerIDBytes)
	}
	if req.MaxWait != nil {
		if err := req.MaxWait.CheckValid(); err != nil || req.MaxWait.AsDuration() < 0 || req.MaxWait.AsDuration() > lim.MaxFetchWait {
			return fr, fmt.Errorf("%w: max_wait must be between 0 and %s", apierr.ErrInvalid, lim.MaxFetchWait)
		}
		fr.Wait = req.MaxWait.AsDuration()
	}
	if req.LeaseDuration != nil {
		d := req.LeaseDuration.AsDuration()
		if req.LeaseDuration.CheckValid() != nil || (d != 0 && (d < lim.MinLeaseDuration || d > lim.MaxLeaseDuration)) {
			return fr, fmt.Errorf("%w: lease_duration must be between %s and %s", apierr.ErrInvalid, lim.MinLeaseDuration, lim.MaxLeaseDuration)
		}
		fr.LeaseDuration = d
	}
	return fr, nil
}

// maxQueueWeight bounds a FetchRequest.queue_weights weight: ratios
// beyond 1000:1 are strict preference in all but name.
const maxQueueWeight = 1000

func leaseRef(id string, token uint64) (*fsmpb.LeaseRef, error) {
	if err := checkJobID(id); err != nil {
		return nil, err
	}
	if token == 0 {
		return nil, fmt.Errorf("%w: lease_token is required", apierr.ErrInvalid)
	}
	return &fsmpb.LeaseRef{JobId: id, Token: token}, nil
}

// validateExtend checks an ExtendLease; a zero extend_by keeps the job's
// own lease duration.
func validateExtend(lim Limits, req *raftqv1.ExtendLeaseRequest) (*fsmpb.LeaseRef, error) {
	ref, err := leaseRef(req.JobId, req.LeaseToken)
	if err != nil {
		return nil, err
	}
	if req.ExtendBy != nil {
		d := req.ExtendBy.AsDuration()
		if req.ExtendBy.CheckValid() != nil || (d != 0 && (d < lim.MinLeaseDuration || d > lim.MaxLeaseDuration)) {
			return nil, fmt.Errorf("%w: extend_by must be between %s and %s", apierr.ErrInvalid, lim.MinLeaseDuration, lim.MaxLeaseDuration)
		}
		ref.Duration = int64(d)
	}
	if p := req.GetProgress(); p != nil {
		if f := p.GetFraction(); !(f >= 0 && f <= 1) {
			return nil, fmt.Errorf("%w: progress.fraction must be from 0 to 1, got %v", apierr.ErrInvalid, f)
		}
		if n := len(p.GetMessage()); n > fsm.MaxProgressMessage {
			return nil, fmt.Errorf("%w: progress.message is %d bytes (at most %d)", apierr.ErrInvalid, n, fsm.MaxProgressMessage)
		}
		ref.SetProgress, ref.Progress, ref.ProgressMessage = true, p.GetFraction(), p.GetMessage()
	}
	return ref, nil
}

// validateAck checks an Ack.
func validateAck(req *raftqv1.AckRequest) (*fsmpb.LeaseRef, error) {
	return leaseRef(req.JobId, req.LeaseToken)
}

// validateNack checks a Nack; RetryAfter -1 means the job's own back-off.
func validateNack(lim Limits, req *raftqv1.NackRequest) (*fsmpb.NackItem, error) {
	ref, err := leaseRef(req.JobId, req.LeaseToken)
	if err != nil {
		return nil, err
	}
	if len(req.Error) > maxNackErrBytes {
		return nil, fmt.Errorf("%w: error text longer than 64 KiB", apierr.ErrTooLarge)
	}
	item := &fsmpb.NackItem{JobId: ref.JobId, Token: ref.Token, Error: req.Error, RetryAfter: -1, Permanent: req.Permanent}
	if req.RetryAfter != nil {
		d := req.RetryAfter.AsDuration()
		if req.RetryAfter.CheckValid() != nil || d < 0 || d > lim.MaxDelay {
			return nil, fmt.Errorf("%w: retry_after must be between 0 and %s", apierr.ErrInvalid, lim.MaxDelay)
		}
		item.RetryAfter = int64(d)
	}
	return item, nil
}

// validateQueueStats checks the queue names (none means all).
func validateQueueStats(req *raftqv1.QueueStatsRequest) error {
	if len(req.Queues) > maxIDList {
		return fmt.Errorf("%w: at most %d queues", apierr.ErrInvalid, maxIDList)
	}
	for _, q := range req.Queues {
		if err := checkName("queue", q); err != nil {
			return err
		}
	}
	return nil
}

func validateIDList(ids []string, limit int32) error {
	if len(ids) > maxIDList {
		return fmt.Errorf("%w: at most %d job ids", apierr.ErrInvalid, maxIDList)
	}
	for _, id := range ids {
		if err := checkJobID(id); err != nil {
			return err
		}
	}
	if limit < 0 || limit > maxIDList {
		return fmt.Errorf("%w: limit must be between 0 and %d", apierr.ErrInvalid, maxIDList)
	}
	return nil
}

// validateRedrive checks a Redrive.
func validateRedrive(req *raftqv1.RedriveRequest) error {
	if err := checkName("queue", req.Queue); err != nil {
		return err
	}
	return validateIDList(req.JobIds, req.Limit)
}

// validatePurgeDead checks a PurgeDead.
func validatePurgeDead(req *raftqv1.PurgeDeadRequest) error {
	if err := checkName("queue", req.Queue); err != nil {
		return err
	}
	return validateIDList(req.JobIds, req.Limit)
}

// validateListJobs checks a ListJobs and returns its page size.
func validateListJobs(req *raftqv1.ListJobsRequest) (int, error) {
	if err := checkName("queue", req.Queue); err != nil {
		return 0, err
	}
	if req.State <= raftqv1.JobState_JOB_STATE_UNSPECIFIED || req.State > raftqv1.JobState_JOB_STATE_WAITING {
		return 0, fmt.Errorf("%w: state is required", apierr.ErrInvalid)
	}
	if len(req.After) > maxJobIDBytes {
		return 0, fmt.Errorf("%w: after longer than %d bytes", apierr.ErrInvalid, maxJobIDBytes)
	}
	limit := int(req.Limit)
	if limit <= 0 {
		limit = defaultListJobs
	}
	if limit > maxListJobs {
		return 0, fmt.Errorf("%w: limit must be at most %d", apierr.ErrInvalid, maxListJobs)
	}
	return limit, nil
}

// validateNodeID checks a Raft server id (what --id allows).
func validateNodeID(id string, required bool) error {
	switch {
	case id == "" && required:
		return fmt.Errorf("%w: node_id is required", apierr.ErrInvalid)
	case len(id) > maxNodeIDBytes:
		return fmt.Errorf("%w: node_id longer than %d bytes", apierr.ErrInvalid, maxNodeIDBytes)
	case strings.ContainsAny(id, "/ ,=\x00\n"):
		return fmt.Errorf("%w: node_id must not contain '/', ' ', ',', '=' or control characters", apierr.ErrInvalid)
	}
	return nil
}

func validateAddr(field, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil || len(addr) > maxAddrBytes {
		return fmt.Errorf("%w: %s %q must be host:port", apierr.ErrInvalid, field, addr)
	}
	return nil
}

// validateJoin checks a Join: a node id and both its addresses.
func validateJoin(req *raftqv1.JoinRequest) error {
	if req.NodeId == "" || req.RaftAddr == "" || req.GrpcAddr == "" {
		return fmt.Errorf("%w: join needs node_id, raft_addr and grpc_addr", apierr.ErrInvalid)
	}
	if err := validateNodeID(req.NodeId, true); err != nil {
		return err
	}
	if err := validateAddr("raft_addr", req.RaftAddr); err != nil {
		return err
	}
	return validateAddr("grpc_addr", req.GrpcAddr)
}
