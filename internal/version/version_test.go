package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestStampedValuesWin(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "v1.2.3-4-gabc", "abc123"
	got := String("brokerd")
	want := "brokerd v1.2.3-4-gabc (commit abc123, " + runtime.Version() + ")"
	if got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
}

func TestFallbackIsNeverEmpty(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "", ""
	i := Get()
	if i.Version == "" || i.Commit == "" || i.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v: want non-empty version and commit and %s", i, runtime.Version())
	}
}

func TestRequested(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"--version"}, true},
		{[]string{"-version"}, true},
		{[]string{"config", "--version"}, false},
		{nil, false},
		{[]string{"--config", "x.yaml"}, false},
	} {
		if got := Requested(c.args); got != c.want {
			t.Errorf("Requested(%q) = %v, want %v", strings.Join(c.args, " "), got, c.want)
		}
	}
}
