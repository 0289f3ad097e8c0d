package main

import (
	"bytes"
	"testing"

	"github.com/raftq/raftq/internal/config/configtest"
)

// docs/examples/brokerd.yaml loads through `brokerd config`, every key of
// it taken from the file.
func TestExampleConfig(t *testing.T) {
	file := configtest.Example(t, "brokerd.yaml")
	var out, errb bytes.Buffer
	if code := run([]string{"config", "--config", file}, &out, &errb); code != 0 {
		t.Fatalf("brokerd config --config %s: exit %d: %s", file, code, errb.String())
	}
	configtest.CheckReported(t, file, out.String())
}
