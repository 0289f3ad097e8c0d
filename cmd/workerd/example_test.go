package main

import (
	"context"
	"io"
	"testing"

	"github.com/raftq/raftq/internal/config/configtest"
)

// docs/examples/workerd.yaml loads through `workerd config`, every key of
// it taken from the file.
func TestExampleConfig(t *testing.T) {
	configtest.CheckExample(t, "workerd.yaml", func(args []string, stdout, stderr io.Writer) int {
		return run(context.Background(), append([]string{"config"}, args...), stdout, stderr)
	})
}
