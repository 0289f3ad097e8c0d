package auth

import (
	"errors"
	"io"
	"os"

	"github.com/raftq/raftq/internal/config"
)

// AuditKeys are the audit sink's configuration keys, the same in brokerd
// and svcd.
func AuditKeys() []config.Key {
	positive := func(v any) error {
		switch x := v.(type) {
		case int:
			if x <= 0 {
				return errors.New("must be positive")
			}
		case float64:
			if x <= 0 {
				return errors.New("must be positive")
			}
		}
		return nil
	}
	return []config.Key{
		{Name: "audit.file", Flag: "audit-file", Kind: config.String,
			Usage: "file audit lines (JSON: admin actions and refused calls) are appended to, whatever the log level (empty or -: standard error)"},
		{Name: "audit.refusals_per_sec", Flag: "audit-refusals-per-sec", Kind: config.Float, Default: 10.0, Check: positive,
			Usage: "refusal lines written per second at most; the rest are counted in a summary line"},
		{Name: "audit.refusal_burst", Flag: "audit-refusal-burst", Kind: config.Int, Default: 100, Check: positive,
			Usage: "refusal lines that may be written at once before audit.refusals_per_sec applies"},
	}
}

// OpenAuditFromConfig opens the audit sink the AuditKeys in v describe;
// stderr is standard error (the daemon's own, so tests can capture it).
func OpenAuditFromConfig(v *config.Values, stderr io.Writer) (*AuditLog, error) {
	l := AuditLimits{RefusalsPerSec: v.Float("audit.refusals_per_sec"), RefusalBurst: v.Int("audit.refusal_burst")}
	if p := v.String("audit.file"); p != "" && p != "-" {
		return OpenAuditLog(p, l)
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	return NewAuditLog(stderr, l), nil
}
