// Package python_test runs the Python example (examples/python) against a
// real in-process 3-node cluster: the "other languages" path of the docs
// stays true.
package python_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// python finds an interpreter that has Debian's python3-grpcio and
// python3-grpc-tools (RAFTQ_PYTHON first, then /usr/bin/python3, where
// apt installs them, then python3 on PATH, which may be another one).
func python() (string, error) {
	var last error
	for _, p := range []string{os.Getenv("RAFTQ_PYTHON"), "/usr/bin/python3", "python3"} {
		if p == "" {
			continue
		}
		out, err := exec.Command(p, "-c", "import grpc, grpc_tools.protoc").CombinedOutput()
		if err == nil {
			return p, nil
		}
		last = fmt.Errorf("%s: %w: %s", p, err, strings.TrimSpace(string(out)))
	}
	return "", last
}

// TestPythonExample: the example enqueues, fetches and acks one job over
// gRPC; the job is then succeeded in the cluster (read here with the Go
// client, not taken from the script's word).
func TestPythonExample(t *testing.T) {
	py, err := python()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs python3-grpcio and python3-grpc-tools (.ci/run installs them): %v", err)
		}
		t.Skipf("skipped: no python3 with grpc and grpc_tools (apt-get install python3-grpcio python3-grpc-tools): %v", err)
	}
	c := testcluster.New(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "raftq_example.py", "--brokers", strings.Join(c.Addrs(), ","), "--queue", "py", "--payload", "héllo")
	cmd.Env = append(os.Environ(), "RAFTQ_TLS_CA=", "RAFTQ_AUTH_TOKEN=")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("python example: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	var res struct {
		JobID   string `json:"job_id"`
		State   string `json:"state"`
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.JobID == "" {
		t.Fatalf("python example printed %q: %v", out, err)
	}
	j, err := c.Client().GetJob(ctx, res.JobID, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != raftqv1.JobState_JOB_STATE_SUCCEEDED || j.Queue != "py" || string(j.Payload) != "héllo" || res.Payload != "héllo" {
		t.Fatalf("job after the python example: state %v queue %q payload %q (script saw %q)", j.State, j.Queue, j.Payload, res.Payload)
	}
}
