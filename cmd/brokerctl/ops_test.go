package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// ctl runs brokerctl in-process and returns what it printed.
func ctl(t *testing.T, brokers string, args ...string) (string, error) {
	t.Helper()
	root := rootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--brokers", brokers, "--timeout", "30s"}, args...))
	err := root.Execute()
	return out.String(), err
}

func ctlOK(t *testing.T, brokers string, args ...string) string {
	t.Helper()
	out, err := ctl(t, brokers, args...)
	if err != nil {
		t.Fatalf("brokerctl %v: %v\n%s", args, err, out)
	}
	return out
}

func ctlJSON(t *testing.T, brokers string, v any, args ...string) {
	t.Helper()
	out := ctlOK(t, brokers, append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("brokerctl %v: not JSON: %v\n%s", args, err, out)
	}
}

// TestOperatorCommands drives every operator command against a real
// 3-node cluster, in table and JSON output.
func TestOperatorCommands(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	b := strings.Join(c.Addrs(), ",")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Two dead jobs and a ready one in queue "ops".
	spec := func(p string) *raftqv1.JobSpec {
		return &raftqv1.JobSpec{Queue: "ops", Type: "t", MaxAttempts: 1, Payload: []byte(p)}
	}
	if _, err := cl.Enqueue(ctx, spec("a"), spec("b")); err != nil {
		t.Fatal(err)
	}
	jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"ops"}, MaxJobs: 2, MaxWait: durationpb.New(5 * time.Second), WorkerId: "w"})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("fetch %v %v", jobs, err)
	}
	var dead []string
	for _, j := range jobs {
		if _, err := cl.Nack(ctx, &raftqv1.NackRequest{JobId: j.Id, LeaseToken: j.LeaseToken, Error: "bad input"}); err != nil {
			t.Fatal(err)
		}
		dead = append(dead, j.Id)
	}
	res, err := cl.Enqueue(ctx, spec("c"))
	if err != nil {
		t.Fatal(err)
	}
	ready := res[0].JobId

	t.Run("output format", func(t *testing.T) {
		if _, err := ctl(t, b, "-o", "yaml", "queues", "list"); err == nil || !strings.Contains(err.Error(), "table or json") {
			t.Fatalf("-o yaml: %v", err)
		}
	})

	t.Run("queues", func(t *testing.T) {
		out := ctlOK(t, b, "queues", "list")
		if !strings.Contains(out, "QUEUE") || !strings.Contains(out, "ops") {
			t.Fatalf("table:\n%s", out)
		}
		var qs struct {
			Queues []struct {
				Name   string           `json:"name"`
				Paused bool             `json:"paused"`
				Counts map[string]int64 `json:"counts"`
			} `json:"queues"`
		}
		ctlJSON(t, b, &qs, "queues", "list", "ops")
		if len(qs.Queues) != 1 || qs.Queues[0].Counts["dead"] != 2 || qs.Queues[0].Counts["ready"] != 1 {
			t.Fatalf("json: %+v", qs)
		}
		ctlOK(t, b, "queues", "pause", "ops")
		ctlJSON(t, b, &qs, "queues", "list", "ops")
		if !qs.Queues[0].Paused {
			t.Fatal("not paused")
		}
		ctlOK(t, b, "queues", "resume", "ops")
		ctlJSON(t, b, &qs, "queues", "list", "ops")
		if qs.Queues[0].Paused {
			t.Fatal("still paused")
		}
	})

	t.Run("jobs", func(t *testing.T) {
		var j struct {
			ID, State string
			Payload   []byte
		}
		ctlJSON(t, b, &j, "jobs", "get", ready)
		if j.ID != ready || j.State != "ready" || string(j.Payload) != "c" {
			t.Fatalf("get: %+v", j)
		}
		out := ctlOK(t, b, "jobs", "get", ready)
		if !strings.Contains(out, "STATE") || !strings.Contains(out, "ready") {
			t.Fatalf("get table:\n%s", out)
		}
		var page struct {
			Jobs []struct{ ID string } `json:"jobs"`
		}
		ctlJSON(t, b, &page, "jobs", "list", "--queue", "ops", "--state", "dead")
		if len(page.Jobs) != 2 {
			t.Fatalf("list: %+v", page)
		}
		if _, err := ctl(t, b, "jobs", "list", "--queue", "ops", "--state", "gone"); err == nil {
			t.Fatal("bad state accepted")
		}
		if _, err := ctl(t, b, "jobs", "get", "0190d3c0-0000-7000-8000-000000000000"); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("unknown job: %v", err)
		}
	})

	t.Run("dead letters", func(t *testing.T) {
		out := ctlOK(t, b, "dlq", "list", "ops")
		if !strings.Contains(out, dead[0]) || !strings.Contains(out, "bad input") {
			t.Fatalf("dlq list:\n%s", out)
		}
		out = ctlOK(t, b, "dlq", "inspect", "ops", dead[0])
		if !strings.Contains(out, "LAST ERROR") {
			t.Fatalf("inspect:\n%s", out)
		}
		if _, err := ctl(t, b, "dlq", "inspect", "ops", ready); err == nil {
			t.Fatal("inspect of a ready job accepted")
		}
		if _, err := ctl(t, b, "dlq", "redrive", "ops"); err == nil {
			t.Fatal("redrive without ids or --all accepted")
		}
		var ids struct {
			JobIDs []string `json:"job_ids"`
		}
		ctlJSON(t, b, &ids, "dlq", "redrive", "ops", dead[0])
		if len(ids.JobIDs) != 1 || ids.JobIDs[0] != dead[0] {
			t.Fatalf("redrive: %+v", ids)
		}
		if _, err := ctl(t, b, "dlq", "purge", "ops"); err == nil {
			t.Fatal("purge without ids or --all accepted")
		}
		ctlJSON(t, b, &ids, "dlq", "purge", "ops", "--all")
		if len(ids.JobIDs) != 1 || ids.JobIDs[0] != dead[1] {
			t.Fatalf("purge: %+v", ids)
		}
		if _, err := cl.GetJob(ctx, dead[1], raftqv1.Consistency_CONSISTENCY_LINEARIZABLE); err == nil {
			t.Fatal("purged job still there")
		}
	})

	t.Run("cluster", func(t *testing.T) {
		out := ctlOK(t, b, "cluster", "status")
		if strings.Count(out, "Leader") != 1 || strings.Count(out, "Follower") != 2 {
			t.Fatalf("status:\n%s", out)
		}
		var m struct {
			Members []struct {
				NodeID string `json:"node_id"`
				Leader bool   `json:"leader"`
			} `json:"members"`
		}
		ctlJSON(t, b, &m, "cluster", "members")
		if len(m.Members) != 3 {
			t.Fatalf("members: %+v", m)
		}
		old := c.WaitLeader(10 * time.Second).ID()
		target := ""
		for _, mm := range m.Members {
			if mm.NodeID != old {
				target = mm.NodeID
			}
		}
		var tr struct {
			LeaderID string `json:"leader_id"`
		}
		ctlJSON(t, b, &tr, "cluster", "transfer", target)
		if tr.LeaderID != target {
			t.Fatalf("transfer to %s: %+v", target, tr)
		}
		if _, err := ctl(t, b, "cluster", "remove", "nope"); err == nil {
			t.Fatal("removal of an unknown member accepted")
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "backup.snap")
		out := ctlOK(t, b, "snapshot", "save", file)
		st, err := os.Stat(file)
		if err != nil || st.Size() == 0 || !strings.Contains(out, "APPLIED INDEX") {
			t.Fatalf("save: %v\n%s", err, out)
		}
		if _, err := ctl(t, b, "snapshot", "restore", file); err == nil {
			t.Fatal("restore without --yes accepted")
		}
		var r struct{ Jobs int64 }
		ctlJSON(t, b, &r, "snapshot", "restore", file, "--yes")
		if r.Jobs != 2 { // the ready job and the redriven one
			t.Fatalf("restore: %+v", r)
		}
	})

	t.Run("completion", func(t *testing.T) {
		out := ctlOK(t, b, "completion", "bash")
		if !strings.Contains(out, "__start_brokerctl") {
			t.Fatalf("bash completion: %.200s", out)
		}
	})
}
