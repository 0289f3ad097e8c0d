package auth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// auditLines decodes the JSON lines of an audit file.
func auditLines(t *testing.T, data string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(data), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestAuditLogCapsRefusals: refusals beyond the burst are counted, not
// written, and one summary line says how many; admin actions are written
// whatever the refusal budget; every line is JSON with msg "audit", a
// time, no level, and the view's attributes.
func TestAuditLogCapsRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	// A rate so low that no token comes back during the test.
	l, err := OpenAuditLog(path, AuditLimits{RefusalsPerSec: 1e-9, RefusalBurst: 5})
	if err != nil {
		t.Fatal(err)
	}
	v := l.With(slog.String("node", "n1"))
	refusal := []slog.Attr{slog.String("principal", "(unauthenticated)"), slog.String("outcome", OutcomeRefused)}
	for i := 0; i < 1000; i++ {
		v.write(context.Background(), true, refusal)
	}
	v.write(context.Background(), false, []slog.Attr{slog.String("principal", "token:ops"), slog.String("outcome", OutcomeOK)})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
	var refused, ok, suppressed int
	for _, m := range auditLines(t, string(data)) {
		if m["msg"] != AuditMessage || m["time"] == nil || m["level"] != nil {
			t.Fatalf("not an audit line: %v", m)
		}
		switch {
		case m["suppressed"] != nil:
			suppressed += int(m["suppressed"].(float64))
		case m["outcome"] == OutcomeRefused:
			refused++
			if m["node"] != "n1" {
				t.Fatalf("line without the view's node: %v", m)
			}
		case m["outcome"] == OutcomeOK:
			ok++
		}
	}
	if refused != 5 || suppressed != 995 || ok != 1 {
		t.Fatalf("refusals written %d, suppressed %d, actions %d; want 5, 995, 1:\n%s", refused, suppressed, ok, data)
	}
}

func TestOutcome(t *testing.T) {
	if outcome(nil) != OutcomeOK || outcome(denied("x")) != OutcomeRefused || outcome(errors.New("boom")) != OutcomeFailed {
		t.Fatal("outcome mapping wrong")
	}
}
