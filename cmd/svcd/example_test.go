package main

import (
	"bytes"
	"testing"

	"github.com/raftq/raftq/internal/config/configtest"
)

// docs/examples/svcd.yaml loads through `svcd config`, every key of it
// taken from the file.
func TestExampleConfig(t *testing.T) {
	file := configtest.Example(t, "svcd.yaml")
	var out, errb bytes.Buffer
	if code := printConfig([]string{"--config", file}, &out, &errb); code != 0 {
		t.Fatalf("svcd config --config %s: exit %d: %s", file, code, errb.String())
	}
	configtest.CheckReported(t, file, out.String())
}
