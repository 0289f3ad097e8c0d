package main

import (
	"io"
	"testing"

	"github.com/raftq/raftq/internal/config/configtest"
)

// docs/examples/brokerd.yaml loads through `brokerd config`, every key of
// it taken from the file.
func TestExampleConfig(t *testing.T) {
	configtest.CheckExample(t, "brokerd.yaml", func(args []string, stdout, stderr io.Writer) int {
		return run(append([]string{"config"}, args...), stdout, stderr)
	})
}
