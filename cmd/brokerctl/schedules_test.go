package main

import (
	"os"
	"strings"
	"testing"
	"time"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// TestScheduleFileInDocs parses the schedules file example of docs/cli.md,
// and refuses typos and names declared twice.
func TestScheduleFileInDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\nschedules:")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/cli.md has no schedules YAML example")
	}
	specs, err := readScheduleFile(strings.NewReader("schedules:" + block))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].TimeZone != "Europe/Paris" || specs[0].Jitter.AsDuration() != time.Minute ||
		specs[0].Overlap != raftqv1.OverlapPolicy_OVERLAP_POLICY_SKIP || specs[0].CatchUp != 1 ||
		specs[0].Job.LeaseDuration.AsDuration() != 5*time.Minute || string(specs[0].Job.Payload) != `{"full": true}` ||
		specs[1].Interval.AsDuration() != 30*time.Second || specs[1].Cron != "" {
		t.Fatalf("parsed: %v", specs)
	}
	for name, bad := range map[string]string{
		"field cron_expr not found": "schedules:\n  - name: a\n    cron_expr: \"@hourly\"\n",
		"declared twice":            "schedules:\n  - name: a\n  - name: a\n",
		"want skip, allow":          "schedules:\n  - name: a\n    overlap: sometimes\n",
	} {
		if _, err := readScheduleFile(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
