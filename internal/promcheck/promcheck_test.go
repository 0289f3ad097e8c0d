package promcheck

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB whose failures are recorded, not reported.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper()                         {}
func (r *recorder) Logf(format string, args ...any) {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func check(t *testing.T, body string) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Check(r, []byte(body))
	}()
	<-done
	return r.failures
}

func TestCheck(t *testing.T) {
	good := "# HELP raftq_jobs_total Jobs.\n# TYPE raftq_jobs_total counter\nraftq_jobs_total 3\n"
	if f := check(t, good); len(f) != 0 {
		t.Fatalf("good metrics refused: %v", f)
	}
	bad := "# HELP raftqJobs Jobs.\n# TYPE raftqJobs counter\nraftqJobs 3\n"
	f := check(t, bad)
	if len(f) == 0 || !strings.Contains(strings.Join(f, "\n"), "_total") {
		t.Fatalf("bad metrics: %v", f)
	}
}
