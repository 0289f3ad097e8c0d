package brokerd

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// maxJobName bounds JobSpec.name: a label within one request.
const maxJobName = 128

// linkWorkflow checks the workflow fields of an Enqueue request (names,
// depends_on, depends_on_names, dependency_policy) and copies them into
// jobs (the request's jobs as validateEnqueue stamped them, same order),
// turning names into the ids the leader chose. It reports whether the
// request is a workflow: any job with a name or a parent. Unknown parent
// ids (no such job, purged) are left to Apply, which alone sees the state
// the command lands on; everything that needs only the request (a name
// not in it, a cycle among its names, a job depending on itself,
// duplicates, too many parents) is refused here, naming the job.
func linkWorkflow(req *raftqv1.EnqueueRequest, jobs []*fsmpb.NewJob) (bool, error) {
	names := map[string]int{}
	workflow := false
	for i, s := range req.Jobs {
		if s.Name != "" || len(s.DependsOn) > 0 || len(s.DependsOnNames) > 0 {
			workflow = true
		}
		if s.Name == "" {
			continue
		}
		if err := checkJobName(s.Name); err != nil {
			return false, fmt.Errorf("job %d: %w", i, err)
		}
		if _, dup := names[s.Name]; dup {
			return false, fmt.Errorf("%w: job %d: name %q is used twice in the request", apierr.ErrInvalid, i, s.Name)
		}
		names[s.Name] = i
	}
	if !workflow {
		return false, nil
	}
	// edges[i] are the request jobs that job i depends on, for the cycle
	// check by name.
	edges := make([][]int, len(req.Jobs))
	for i, s := range req.Jobs {
		label := jobLabel(i, s)
		switch s.DependencyPolicy {
		case raftqv1.DependencyPolicy_DEPENDENCY_POLICY_CANCEL, raftqv1.DependencyPolicy_DEPENDENCY_POLICY_RUN_ANYWAY:
		default:
			return false, fmt.Errorf("%w: %s: unknown dependency_policy %d", apierr.ErrInvalid, label, s.DependencyPolicy)
		}
		if s.UniqueKey != "" {
			return false, fmt.Errorf("%w: %s: unique_key is not supported in a workflow (a request with names or parents)", apierr.ErrInvalid, label)
		}
		if n := len(s.DependsOn) + len(s.DependsOnNames); n > fsm.MaxParents {
			return false, fmt.Errorf("%w: %s has %d parents (at most %d)", apierr.ErrInvalid, label, n, fsm.MaxParents)
		}
		var parents []string
		for _, id := range s.DependsOn {
			if err := checkJobID(id); err != nil {
				return false, fmt.Errorf("%s: depends_on: %w", label, err)
			}
			parents = append(parents, id)
		}
		for _, name := range s.DependsOnNames {
			k, ok := names[name]
			switch {
			case !ok:
				return false, fmt.Errorf("%w: %s: depends_on_names %q names no job of the request", apierr.ErrInvalid, label, name)
			case k == i:
				return false, fmt.Errorf("%w: %s depends on itself", apierr.ErrInvalid, label)
			}
			edges[i] = append(edges[i], k)
			parents = append(parents, jobs[k].Id)
		}
		for k, p := range parents {
			if slices.Contains(parents[:k], p) {
				return false, fmt.Errorf("%w: %s lists parent %q twice", apierr.ErrInvalid, label, p)
			}
		}
		jobs[i].DependsOn = parents
		jobs[i].DependencyPolicy = int32(s.DependencyPolicy)
	}
	if i, ok := findCycle(edges); ok {
		return false, fmt.Errorf("%w: %s is part of a dependency cycle", apierr.ErrInvalid, jobLabel(i, req.Jobs[i]))
	}
	return true, nil
}

// jobLabel names request job i for errors: its index, and its name when
// it has one.
func jobLabel(i int, s *raftqv1.JobSpec) string {
	if s.Name != "" {
		return fmt.Sprintf("job %d (%q)", i, s.Name)
	}
	return fmt.Sprintf("job %d", i)
}

// checkJobName refuses an overlong or unprintable job name.
func checkJobName(name string) error {
	if len(name) > maxJobName {
		return fmt.Errorf("%w: name longer than %d bytes", apierr.ErrInvalid, maxJobName)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: name is not valid UTF-8", apierr.ErrInvalid)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: name has a non-printable character %U", apierr.ErrInvalid, r)
		}
	}
	return nil
}

// findCycle returns a job on a cycle of the graph (edges[i]: the jobs i
// depends on), by elimination of jobs with no remaining parent.
func findCycle(edges [][]int) (int, bool) {
	indeg := make([]int, len(edges))
	kids := make([][]int, len(edges))
	for i, ps := range edges {
		indeg[i] = len(ps)
		for _, p := range ps {
			kids[p] = append(kids[p], i)
		}
	}
	var ready []int
	for i, d := range indeg {
		if d == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		i := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		for _, k := range kids[i] {
			if indeg[k]--; indeg[k] == 0 {
				ready = append(ready, k)
			}
		}
	}
	for i, d := range indeg {
		if d > 0 {
			return i, true
		}
	}
	return 0, false
}

// explainIDs rewrites the job ids the leader chose in an FSM refusal into
// the request's terms (index and name), which the client knows.
func explainIDs(err error, req *raftqv1.EnqueueRequest, jobs []*fsmpb.NewJob) error {
	sentinel := unwrapSentinel(err)
	msg := strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
	var pairs []string
	for i, j := range jobs {
		if strings.Contains(msg, j.Id) {
			pairs = append(pairs, fmt.Sprintf("%q", j.Id), fmt.Sprintf("%q (%s)", j.Id, jobLabel(i, req.Jobs[i])))
		}
	}
	if len(pairs) == 0 {
		return err
	}
	return fmt.Errorf("%w: %s", sentinel, strings.NewReplacer(pairs...).Replace(msg))
}

// unwrapSentinel is the fsm sentinel err wraps (so the gRPC code stays).
func unwrapSentinel(err error) error {
	for _, s := range []error{fsm.ErrInvalid, fsm.ErrDuplicateID, fsm.ErrNotFound} {
		if errors.Is(err, s) {
			return s
		}
	}
	return fsm.ErrInvalid
}
