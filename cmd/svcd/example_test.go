package main

import (
	"testing"

	"github.com/raftq/raftq/internal/config/configtest"
)

// docs/examples/svcd.yaml loads through `svcd config`, every key of it
// taken from the file.
func TestExampleConfig(t *testing.T) {
	configtest.CheckExample(t, "svcd.yaml", printConfig)
}
