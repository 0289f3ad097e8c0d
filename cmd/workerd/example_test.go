package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/raftq/raftq/internal/config/configtest"
)

// docs/examples/workerd.yaml loads through `workerd config`, every key of
// it taken from the file.
func TestExampleConfig(t *testing.T) {
	file := configtest.Example(t, "workerd.yaml")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"config", "--config", file}, &out, &errb); code != 0 {
		t.Fatalf("workerd config --config %s: exit %d: %s", file, code, errb.String())
	}
	configtest.CheckReported(t, file, out.String())
}
