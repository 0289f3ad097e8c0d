package workerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/raftq/raftq/worker"
)

// Builtins returns the daemon's built-in job types, by type name. They exist
// so that operators can smoke-test a cluster and tests can drive workers
// without writing code:
//
//   - echo: output = payload.
//   - sleep: payload is a Go duration ("2s"; empty means 1s); sleeps that
//     long or until the job's context ends, whichever is first.
//   - sha256: output = hex SHA-256 of the payload.
//   - flaky: payload {"fail": N} or "N"; attempts 1..N fail (retryable),
//     attempt N+1 succeeds.
//   - fail: always fails permanently with the payload as the error text, to
//     exercise dead-lettering and redrive.
func Builtins() map[string]worker.Handler {
	return map[string]worker.Handler{
		"echo":   Echo,
		"sleep":  Sleep,
		"sha256": SHA256,
		"flaky":  Flaky,
		"fail":   Fail,
	}
}

// Register adds every built-in handler to w.
func Register(w *worker.Worker) {
	for name, h := range Builtins() {
		w.Handle(name, h)
	}
}

// Echo succeeds with the payload as its output.
func Echo(_ context.Context, job *worker.Job) error {
	job.SetOutput(job.Payload)
	return nil
}

// Sleep sleeps for the duration in the payload, honouring cancellation. A
// payload that is not a duration is a permanent error.
func Sleep(ctx context.Context, job *worker.Job) error {
	d := time.Second
	if p := strings.TrimSpace(string(job.Payload)); p != "" {
		var err error
		if d, err = time.ParseDuration(p); err != nil || d < 0 {
			return worker.Permanent(fmt.Errorf("sleep: payload %q is not a duration", p))
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		job.SetOutput([]byte("slept " + d.String()))
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sleep interrupted: %w", context.Cause(ctx))
	}
}

// SHA256 succeeds with the hex SHA-256 digest of the payload as output.
func SHA256(_ context.Context, job *worker.Job) error {
	sum := sha256.Sum256(job.Payload)
	job.SetOutput([]byte(hex.EncodeToString(sum[:])))
	return nil
}

// FlakyFailures parses a flaky payload: {"fail": N} or a bare "N".
func FlakyFailures(payload []byte) (int32, error) {
	p := strings.TrimSpace(string(payload))
	if p == "" {
		return 0, nil
	}
	if strings.HasPrefix(p, "{") {
		var v struct {
			Fail *int32 `json:"fail"`
		}
		if err := json.Unmarshal([]byte(p), &v); err != nil || v.Fail == nil || *v.Fail < 0 {
			return 0, fmt.Errorf("flaky: payload %q: want {\"fail\": N} with N >= 0", p)
		}
		return *v.Fail, nil
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("flaky: payload %q: want a count N >= 0", p)
	}
	return int32(n), nil
}

// Flaky fails (retryably) while the attempt number is at most N, then
// succeeds: it shows retries and back-off at work.
func Flaky(_ context.Context, job *worker.Job) error {
	n, err := FlakyFailures(job.Payload)
	if err != nil {
		return worker.Permanent(err)
	}
	if job.Attempt <= n {
		return fmt.Errorf("flaky: attempt %d of %d planned failures", job.Attempt, n)
	}
	job.SetOutput([]byte(fmt.Sprintf("ok on attempt %d", job.Attempt)))
	return nil
}

// Fail fails permanently with the payload as the error text.
func Fail(_ context.Context, job *worker.Job) error {
	msg := string(job.Payload)
	if msg == "" {
		msg = "fail: asked to fail"
	}
	return worker.Permanent(fmt.Errorf("%s", msg))
}
