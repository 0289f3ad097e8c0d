// Package history records what the harness's clients did: one Op per call,
// with the times it was invoked and completed and how it ended. Checkers
// read nothing else, so a history saved as history.jsonl can be checked
// again later (cmd/jepsen check).
package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// Kind is what an operation did.
type Kind string

// The operation kinds.
const (
	// Enqueue adds one job whose payload is Value.
	Enqueue Kind = "enqueue"
	// Fetch leases a job (JobID, Token, Value) or comes back empty.
	Fetch Kind = "fetch"
	// Store writes the job's result to svcd under Token; State is svcd's
	// outcome (stored, duplicate, already_succeeded, stale).
	Store Kind = "store"
	// Ack marks JobID succeeded under Token.
	Ack Kind = "ack"
	// Read is a linearizable GetJob: State and Token as read, or State
	// "not_found".
	Read Kind = "read"
	// Nemesis is one fault interval: Start when injected, End when healed.
	Nemesis Kind = "nemesis"
)

// Status is how an operation ended, in Jepsen's terms.
type Status string

// The statuses.
const (
	// OK: it happened.
	OK Status = "ok"
	// Fail: it definitely did not happen.
	Fail Status = "fail"
	// Info: it may or may not have happened (indeterminate, timeout).
	Info Status = "info"
)

// NotFound is the State of a Read that found no job.
const NotFound = "not_found"

// Op is one completed client operation (or one nemesis interval).
type Op struct {
	Index   int    `json:"index"`
	Process int    `json:"process"`
	Kind    Kind   `json:"kind"`
	Status  Status `json:"status"`
	// Start and End are nanoseconds since the run began.
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Value string `json:"value,omitempty"`
	// Queue is set on ops of the workerd queue (empty: the harness's own
	// queue, worked by in-harness workers).
	Queue string `json:"queue,omitempty"`
	JobID string `json:"job_id,omitempty"`
	// Group is the Raft group of the queue the op was sent to
	// (placement.Queue), recorded on enqueues and fetches of a cluster
	// running several groups: an enqueue without a job id (failed or
	// indeterminate) is counted in its queue's group, and a job id whose
	// group differs from its queue's is a routing failure.
	Group uint32 `json:"group,omitempty"`
	Token uint64 `json:"token,omitempty"`
	State string `json:"state,omitempty"`
	// Dup: an enqueue answered with an earlier job (idempotency key).
	Dup bool `json:"dup,omitempty"`
	// Zombie: an ack sent on purpose after the lease ran out.
	Zombie bool `json:"zombie,omitempty"`
	// MoveTo, on a nemesis op of family "move", is the group the queue
	// whose hash group is Group was moved to (one element); from its
	// Start, jobs of that queue may come from there too.
	MoveTo []uint32 `json:"move_to,omitempty"`
	// Family and Node describe nemesis intervals.
	Family string `json:"family,omitempty"`
	Node   string `json:"node,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Recorder collects ops from many goroutines and appends each to a JSONL
// file as it completes, so a run that dies still leaves its history.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
	w     *bufio.Writer
	f     *os.File
}

// NewRecorder starts the run's clock; path ("" for none) receives the
// history as JSON lines.
func NewRecorder(path string) (*Recorder, error) {
	r := &Recorder{start: time.Now()}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		r.f, r.w = f, bufio.NewWriterSize(f, 1<<16)
	}
	return r, nil
}

// Now is the time since the run began, in nanoseconds.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// StartTime is when the run began (wall clock).
func (r *Recorder) StartTime() time.Time { return r.start }

// Add appends op, giving it the next index, and returns it.
func (r *Recorder) Add(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.ops)
	r.ops = append(r.ops, op)
	if r.w != nil {
		b, _ := json.Marshal(op)
		_, _ = r.w.Write(append(b, '\n'))
	}
	return op
}

// Ops returns a copy of everything recorded so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Close flushes and closes the history file.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		return nil
	}
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.w = nil
	return err
}

// Load reads a history written by a Recorder.
func Load(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []Op
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var op Op
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, len(ops)+1, err)
		}
		ops = append(ops, op)
	}
	return ops, sc.Err()
}
