package checker

import (
	"fmt"
	"math"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftq/raftq/jepsen/history"
)

// jobState is the model of one job as far as clients can observe it: whether
// it exists, its newest lease token, and whether (and under which token) it
// succeeded. Lease expiry and leases whose answer no client saw change the
// job without any recorded operation, so the model is nondeterministic: a
// read may observe a newer token than any recorded lease, but never an
// older one, never "not succeeded" after a success, never "not found" after
// the enqueue.
type jobState struct {
	Created   bool
	Done      bool
	Token     uint64
	DoneToken uint64
}

type jobInput struct {
	Kind  history.Kind
	Token uint64
	// Maybe: the call's outcome is unknown (it may not have happened).
	Maybe bool
}

type jobOutput struct {
	State string
	Token uint64
}

func stepJob(st jobState, in jobInput, out jobOutput) []jobState {
	switch in.Kind {
	case history.Enqueue:
		st.Created = true
		return []jobState{st}
	case history.Fetch: // a lease with in.Token
		if !st.Created || st.Done || in.Token <= st.Token {
			return nil
		}
		st.Token = in.Token
		return []jobState{st}
	case history.Ack:
		var next []jobState
		if in.Maybe {
			next = append(next, st)
		}
		switch {
		case st.Created && !st.Done && st.Token == in.Token:
			st.Done, st.DoneToken = true, in.Token
			next = append(next, st)
		case st.Done && st.DoneToken == in.Token && !in.Maybe:
			next = append(next, st)
		}
		return next
	case history.Read:
		switch {
		case out.State == history.NotFound:
			if st.Created {
				return nil
			}
			return []jobState{st}
		case !st.Created:
			return nil
		case out.State == "succeeded":
			if st.Done && st.DoneToken == out.Token {
				return []jobState{st}
			}
			return nil
		case st.Done || out.Token < st.Token:
			return nil
		default:
			st.Token = out.Token // == or a lease no client saw
			return []jobState{st}
		}
	}
	return nil
}

// Linearizable checks each job's history (enqueue, leases, acks and
// linearizable GetJob reads) with porcupine, one partition per job (G7). An
// Illegal result fails, and so does Unknown (porcupine ran out of time):
// a check that did not finish proved nothing. perJob bounds the time spent
// on one job.
func Linearizable(ops []history.Op, perJob time.Duration) Result {
	r := newResult("linearizable")
	jobs := byJob(ops)
	checked, illegal, unknown, reads := 0, 0, 0, 0
	for _, id := range sortedKeys(jobs) {
		var hist []porcupine.Operation
		hasEnqueue := false
		var idx []int
		for _, op := range jobs[id] {
			in := jobInput{Kind: op.Kind, Token: op.Token}
			out := jobOutput{State: op.State, Token: op.Token}
			ret := op.End
			switch {
			case op.Kind == history.Enqueue && op.Status == history.OK:
				hasEnqueue = true
			case op.Kind == history.Fetch && op.Status == history.OK && op.Token > 0:
			case op.Kind == history.Ack && op.Status == history.OK:
			case op.Kind == history.Ack && op.Status == history.Info:
				in.Maybe = true
				ret = math.MaxInt64
			case op.Kind == history.Read && op.Status == history.OK:
				reads++
			default:
				continue
			}
			idx = append(idx, op.Index)
			hist = append(hist, porcupine.Operation{ClientId: op.Process, Input: in, Output: out, Call: op.Start, Return: ret})
		}
		if len(hist) == 0 {
			continue
		}
		checked++
		init := jobState{Created: !hasEnqueue}
		nm := porcupine.NondeterministicModel{
			Init: func() []interface{} { return []interface{}{init} },
			Step: func(state, input, output interface{}) []interface{} {
				var out []interface{}
				for _, s := range stepJob(state.(jobState), input.(jobInput), output.(jobOutput)) {
					out = append(out, s)
				}
				return out
			},
			Equal: func(a, b interface{}) bool { return a.(jobState) == b.(jobState) },
			DescribeOperation: func(input, output interface{}) string {
				in, out := input.(jobInput), output.(jobOutput)
				switch in.Kind {
				case history.Read:
					return fmt.Sprintf("read -> %s/%d", out.State, out.Token)
				case history.Ack:
					if in.Maybe {
						return fmt.Sprintf("ack(%d) -> ?", in.Token)
					}
				}
				return fmt.Sprintf("%s(%d)", in.Kind, in.Token)
			},
		}
		model := nm.ToModel()
		res := porcupine.CheckOperationsTimeout(model, hist, perJob)
		switch res {
		case porcupine.Illegal:
			illegal++
			r.fail(Failure{Msg: "not linearizable: the reads, leases and acks of job " + id + " fit no order", JobID: id, Ops: idx})
		case porcupine.Unknown:
			unknown++
			r.fail(Failure{Msg: "unknown: porcupine timed out on job " + id, JobID: id, Ops: idx})
		}
	}
	r.Counts["jobs_checked"] = checked
	r.Counts["reads"] = reads
	r.Counts["illegal"] = illegal
	r.Counts["unknown"] = unknown
	return r
}
