package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// PanicError is the error a handler's panic becomes: the job is nacked
// (retryable) with Error() as its error text, which starts with "panic: ".
type PanicError struct {
	// Value is what the handler panicked with.
	Value any
	// Stack is the panicking goroutine's stack.
	Stack []byte
}

// Error is "panic: " and the panic value, the nack's error text.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// task is one leased job: its handler run, its lease keeper, and its
// settlement, which happens exactly once (claim).
type task struct {
	w   *Worker
	job *Job
	// slot is the run slot (nil for a job given straight back); it is
	// released once, when the handler returns or the task ends.
	slot        chan struct{}
	slotFreed   atomic.Bool
	settleSlots chan struct{}
	holdsSettle bool // only the settling goroutine touches it
	base        context.Context
	// sess is the Consume stream the job came on, nil for a fetched job.
	sess *session

	ctx      context.Context
	cancelFn context.CancelCauseFunc
	// span is the attempt's "raftq.run" span, ended in done; the store
	// result and ack spans are its children.
	span     trace.Span
	stopKeep chan struct{}
	ran      bool // the handler was started

	claimed   atomic.Bool
	lost      atomic.Bool
	cancelReq atomic.Bool

	// deadline is the local estimate of the lease deadline; only the keeper
	// touches it.
	deadline time.Time
}

func (t *task) cancel(cause error) { t.cancelFn(cause) }

// claim makes the caller the one that settles the task.
func (t *task) claim() bool { return t.claimed.CompareAndSwap(false, true) }

func (t *task) run(h Handler) {
	t.w.m.started.WithLabelValues(t.job.Queue, t.job.Type).Inc()
	start := time.Now()
	err := t.call(h)
	dur := time.Since(start)
	t.w.m.duration.WithLabelValues(t.job.Queue, t.job.Type).Observe(dur.Seconds())
	if !t.claim() {
		// Shutdown gave up on this job and nacked it already.
		t.w.log.Warn("handler returned after its job was given back", "job_id", t.job.ID, "err", err)
		return
	}
	// Trade the run slot for a settle slot, so the queue can fetch its
	// next job while this one is recorded and acked.
	t.settleSlots <- struct{}{}
	t.holdsSettle = true
	t.releaseRunSlot()
	t.settle(err, start, dur)
}

func (t *task) releaseRunSlot() {
	if t.slot != nil && t.slotFreed.CompareAndSwap(false, true) {
		<-t.slot
	}
}

func (t *task) call(h Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return h(t.ctx, t.job)
}

// abandon nacks a job whose handler did not return in time at shutdown.
func (t *task) abandon() {
	if t.claim() {
		go t.settle(ErrShutdown, time.Now(), 0)
	}
}

// verdict is what to do with an attempt.
type verdict struct {
	status     Status
	ack        bool
	drop       bool // lease lost: neither ack nor nack
	permanent  bool
	retryAfter *time.Duration
	errText    string
	label      string // metric outcome
}

func (t *task) classify(err error) verdict {
	job := t.job
	if t.lost.Load() {
		return verdict{drop: true, label: "lease_lost", status: StatusFailed}
	}
	if err == nil {
		return verdict{status: StatusSucceeded, ack: true, label: "succeeded"}
	}
	text := err.Error()
	if t.cancelReq.Load() {
		return verdict{status: StatusCancelled, errText: "cancelled: " + text, label: "cancelled"}
	}
	if t.ctx.Err() != nil && errors.Is(context.Cause(t.ctx), ErrShutdown) {
		zero := time.Duration(0)
		return verdict{status: StatusFailed, retryAfter: &zero, errText: text, label: "shutdown"}
	}
	if IsPermanent(err) {
		return verdict{status: StatusDead, permanent: true, errText: text, label: "dead"}
	}
	v := verdict{status: StatusFailed, errText: text, label: "failed"}
	if d, ok := RetryDelay(err); ok {
		v.retryAfter = &d
	}
	if job.MaxAttempts > 0 && job.Attempt >= job.MaxAttempts {
		v.status, v.label = StatusDead, "dead"
	}
	return v
}

// settle records the outcome and acks or nacks the job. Its calls use
// contexts derived from the worker's base context (never cancelled by
// shutdown) bounded by SettleTimeout, and the client retries them across
// failovers: whole batch calls, and the items of a batch that one Raft
// group answered NOT_LEADER or UNAVAILABLE while its leader moved.
func (t *task) settle(herr error, started time.Time, dur time.Duration) {
	w, job := t.w, t.job
	s := Settlement{HandlerErr: herr, Duration: dur}
	defer func() {
		// Before done, so that every OnSettle call has returned when Run
		// does.
		if w.opts.OnSettle != nil {
			w.opts.OnSettle(job, s)
		}
		w.done(t)
	}()
	log := w.log.With("job_id", job.ID, "queue", job.Queue, "type", job.Type, "lease_token", job.LeaseToken, "attempt", job.Attempt)
	if pe, ok := herr.(*PanicError); ok {
		log.Error("handler panicked", "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
	}
	v := t.classify(herr)
	s.Status = v.status

	if !v.drop && t.ran {
		v = t.record(v, herr, started)
	}
	if v.drop {
		s.Action, s.Err = ActionDropped, ErrLeaseLost
		w.m.finished.WithLabelValues(job.Queue, job.Type, v.label).Inc()
		log.Warn("lease lost; not settling the job", "handler_err", herr)
		return
	}
	ctx, cancel := context.WithTimeout(t.base, w.opts.SettleTimeout)
	defer cancel()
	if v.ack {
		_, span := t.childSpan(ctx, "raftq.ack", trace.SpanKindClient)
		_, err := w.settle.acks.do(ctx, &raftqv1.AckRequest{JobId: job.ID, LeaseToken: job.LeaseToken})
		endSpan(span, err)
		switch {
		case err == nil:
			s.Action = ActionAcked
			w.m.finished.WithLabelValues(job.Queue, job.Type, v.label).Inc()
			log.Debug("job acked", "duration", dur)
		case leaseGone(err):
			s.Action, s.Err = ActionDropped, fmt.Errorf("%w: %v", ErrLeaseLost, err)
			w.m.finished.WithLabelValues(job.Queue, job.Type, "lease_lost").Inc()
			log.Warn("ack refused: lease lost, another worker has the job", "err", err)
		default:
			s.Action, s.Err = ActionDropped, err
			w.m.settleErrs.WithLabelValues(job.Queue, "ack").Inc()
			w.m.finished.WithLabelValues(job.Queue, job.Type, "settle_error").Inc()
			log.Error("ack failed; the job will run again when its lease expires", "err", err)
		}
		return
	}
	req := &raftqv1.NackRequest{JobId: job.ID, LeaseToken: job.LeaseToken, Error: truncate(v.errText, 60<<10), Permanent: v.permanent}
	if v.retryAfter != nil {
		req.RetryAfter = durationpb.New(*v.retryAfter)
	}
	_, span := t.childSpan(ctx, "raftq.nack", trace.SpanKindClient)
	resp, err := w.settle.nacks.do(ctx, req)
	endSpan(span, err)
	switch {
	case err == nil:
		s.Action, s.State = ActionNacked, resp.GetState()
		w.m.finished.WithLabelValues(job.Queue, job.Type, v.label).Inc()
		log.Info("job nacked", "err", v.errText, "state", resp.GetState().String(), "duration", dur)
	case leaseGone(err):
		// Also what a nack retried after an indeterminate answer sees when
		// the first one committed.
		s.Action, s.Err = ActionDropped, fmt.Errorf("%w: %v", ErrLeaseLost, err)
		w.m.finished.WithLabelValues(job.Queue, job.Type, "lease_lost").Inc()
		log.Warn("nack refused: lease already ended", "err", err)
	default:
		s.Action, s.Err = ActionDropped, err
		w.m.settleErrs.WithLabelValues(job.Queue, "nack").Inc()
		w.m.finished.WithLabelValues(job.Queue, job.Type, "settle_error").Inc()
		log.Error("nack failed; the job will run again when its lease expires", "err", err)
	}
}

// record hands the outcome to the Recorder, retrying until SettleTimeout,
// and adjusts the verdict: an earlier success means ack; a stale token
// means drop; a store that cannot be reached turns an ack into a nack, so
// that no job is acked without its result stored.
func (t *task) record(v verdict, herr error, started time.Time) verdict {
	w, job := t.w, t.job
	if _, nop := w.opts.Recorder.(NopRecorder); nop {
		return v
	}
	o := Outcome{
		JobID: job.ID, Queue: job.Queue, Type: job.Type, LeaseToken: job.LeaseToken,
		WorkerID: w.opts.WorkerID, Attempt: job.Attempt, Status: v.status,
		Output: job.Output(), Error: v.errText, StartedAt: started, FinishedAt: time.Now(),
	}
	ctx, cancel := context.WithTimeout(t.base, w.opts.SettleTimeout)
	defer cancel()
	ctx, span := t.childSpan(ctx, "raftq.store_result", trace.SpanKindClient)
	var lastErr error
	defer func() { endSpan(span, lastErr) }()
	backoff := 50 * time.Millisecond
	for {
		already, err := w.opts.Recorder.Record(ctx, o)
		lastErr = err
		if err == nil {
			if already && !v.ack {
				return verdict{status: StatusSucceeded, ack: true, label: "succeeded"}
			}
			return v
		}
		if errors.Is(err, ErrLeaseLost) || t.lost.Load() {
			return verdict{drop: true, label: "lease_lost", status: v.status}
		}
		w.m.settleErrs.WithLabelValues(job.Queue, "record").Inc()
		if ctx.Err() != nil {
			w.log.Error("recording the outcome failed; nacking the job so it runs again", "job_id", job.ID, "err", err)
			if v.ack {
				return verdict{status: StatusFailed, errText: "worker could not record the result: " + err.Error(), label: "failed"}
			}
			return v
		}
		w.log.Warn("recording the outcome failed; retrying", "job_id", job.ID, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > 2*time.Second {
			backoff = 2 * time.Second
		}
	}
}

// leaseGone reports whether a settle or extend error means this worker's
// lease is over for good: another lease replaced it, or the job is done.
func leaseGone(err error) bool {
	switch client.Reason(err) {
	case raftqv1.ErrorDetail_STALE_TOKEN, raftqv1.ErrorDetail_WRONG_STATE, raftqv1.ErrorDetail_NOT_FOUND:
		return true
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func (t *task) markLost(err error) {
	if t.lost.CompareAndSwap(false, true) {
		t.w.m.extensions.WithLabelValues(t.job.Queue, "lost").Inc()
		t.w.log.Warn("lease lost; cancelling the handler", "job_id", t.job.ID, "lease_token", t.job.LeaseToken, "err", err)
		t.cancel(ErrLeaseLost)
	}
}

func (t *task) markCancelled() {
	if t.cancelReq.CompareAndSwap(false, true) {
		t.w.log.Info("job cancelled; cancelling the handler", "job_id", t.job.ID)
		t.cancel(ErrJobCancelled)
	}
}

// reportProgress sends one lease extension carrying p (Job.Progress). A
// refused lease ends the attempt as a refused keep-alive would, and a
// cancel flag in the answer cancels the handler.
func (t *task) reportProgress(ctx context.Context, p *raftqv1.Progress) error {
	req := &raftqv1.ExtendLeaseRequest{JobId: t.job.ID, LeaseToken: t.job.LeaseToken, Progress: p}
	if d := t.w.opts.LeaseDuration; d > 0 {
		req.ExtendBy = durationpb.New(d)
	}
	resp, err := t.w.settle.extends.do(ctx, req)
	switch {
	case err == nil:
		if resp.GetCancelRequested() {
			t.markCancelled()
		}
		return nil
	case leaseGone(err):
		t.markLost(err)
	}
	return err
}

// keep extends the lease at a third of its duration until the task is
// settled, polls the job's cancel flag in between, and cancels the handler
// when the broker refuses the lease or the lease deadline passes with no
// extension confirmed.
func (t *task) keep() {
	w, job := t.w, t.job
	lease := job.LeaseDuration
	every := lease / 3
	retry := min(max(every/4, 50*time.Millisecond), time.Second)
	callTimeout := min(max(every, 500*time.Millisecond), 10*time.Second)

	ext := time.NewTimer(every)
	defer ext.Stop()
	dl := time.NewTimer(time.Until(t.deadline))
	defer dl.Stop()
	// Poll the cancel flag, unless the job's Consume stream pushes it:
	// then only from when the stream ends.
	var pollC <-chan time.Time
	var sessEnded <-chan struct{}
	var tk *time.Ticker
	defer func() {
		if tk != nil {
			tk.Stop()
		}
	}()
	startPoll := func() {
		if p := w.opts.CancelPoll; p > 0 && p < every {
			tk = time.NewTicker(p)
			pollC = tk.C
		}
	}
	if t.sess != nil {
		sessEnded = t.sess.ended
	} else {
		startPoll()
	}
	var extendBy *durationpb.Duration
	if w.opts.LeaseDuration > 0 {
		extendBy = durationpb.New(w.opts.LeaseDuration)
	}
	for {
		select {
		case <-t.stopKeep:
			return
		case <-sessEnded:
			sessEnded = nil
			startPoll()
		case <-dl.C:
			if !t.lost.Load() {
				w.log.Warn("lease deadline passed without an extension; cancelling the handler", "job_id", job.ID)
				t.cancel(ErrLeaseExpired)
			}
		case <-ext.C:
			sent := time.Now()
			ctx, cancel := context.WithTimeout(t.base, callTimeout)
			resp, err := w.settle.extends.do(ctx, &raftqv1.ExtendLeaseRequest{JobId: job.ID, LeaseToken: job.LeaseToken, ExtendBy: extendBy})
			cancel()
			switch {
			case err == nil:
				w.m.extensions.WithLabelValues(job.Queue, "ok").Inc()
				t.deadline = sent.Add(lease)
				dl.Reset(time.Until(t.deadline))
				if resp.GetCancelRequested() {
					t.markCancelled()
				}
				ext.Reset(every)
			case leaseGone(err):
				t.markLost(err)
				return
			default:
				w.m.extensions.WithLabelValues(job.Queue, "error").Inc()
				w.log.Warn("lease extension failed; retrying", "job_id", job.ID, "err", err)
				ext.Reset(retry)
			}
		case <-pollC:
			ctx, cancel := context.WithTimeout(t.base, w.opts.CancelPoll)
			j, err := w.c.GetJob(ctx, job.ID, raftqv1.Consistency_CONSISTENCY_STALE)
			cancel()
			if err != nil {
				continue
			}
			// A stale read can lag but never shows a token that was not
			// issued: a newer token means the lease is gone for sure.
			switch {
			case j.GetLeaseToken() > job.LeaseToken:
				t.markLost(fmt.Errorf("job leased again with token %d", j.GetLeaseToken()))
				return
			case j.GetLeaseToken() == job.LeaseToken && j.GetCancelRequested():
				t.markCancelled()
			}
		}
	}
}
