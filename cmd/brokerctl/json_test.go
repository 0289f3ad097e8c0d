package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// ctlIn runs brokerctl in-process with stdin and returns stdout alone.
func ctlIn(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := rootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// leafCommands lists every runnable command by its path ("jobs get"),
// hidden aliases included, cobra's help and completion left out.
func leafCommands(c *cobra.Command, prefix string, out map[string]bool) {
	for _, sub := range c.Commands() {
		name := strings.TrimSpace(prefix + " " + sub.Name())
		if sub.Name() == "help" || sub.Name() == "completion" {
			continue
		}
		if sub.Runnable() {
			out[name] = true
		}
		leafCommands(sub, name, out)
	}
}

// TestEveryCommandPrintsJSON runs every brokerctl command with -o json
// against a real 3-node cluster, a real etcd and a real svcd, and parses
// each output as a stream of JSON values: a command that prints any text
// fails it, and so does a command the test does not run.
func TestEveryCommandPrintsJSON(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	b := strings.Join(c.Addrs(), ",")
	etcd := etcdtest.New(t)
	prefix := etcd.Prefix("ctljson")
	sv := svcdtest.Start(t, svcdtest.SQLite(t))

	ran := map[string]bool{}
	// run executes one command with -o json and decodes its stdout into v
	// (the last of several values, for bench's lines).
	run := func(v any, stdin string, args ...string) {
		t.Helper()
		full := append([]string{"--brokers", b, "-o", "json"}, args...)
		out, err := ctlIn(t, stdin, full...)
		if err != nil {
			t.Fatalf("brokerctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		dec := json.NewDecoder(strings.NewReader(out))
		n := 0
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("brokerctl %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
			}
			n++
			if v != nil {
				if err := json.Unmarshal(raw, v); err != nil {
					t.Fatalf("brokerctl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
		}
		if n == 0 {
			t.Fatalf("brokerctl %s printed nothing", strings.Join(args, " "))
		}
		// Record the command path: the leading words that are not flags
		// or arguments.
		root := rootCmd()
		cmd, _, err := root.Find(args)
		if err != nil {
			t.Fatal(err)
		}
		ran[strings.TrimPrefix(cmd.CommandPath(), "brokerctl ")] = true
	}

	type job struct {
		ID         string `json:"id"`
		State      string `json:"state"`
		Queue      string `json:"queue"`
		LeaseToken uint64 `json:"lease_token"`
		Payload    []byte `json:"payload"`
		ConcKey    string `json:"concurrency_key"`
	}
	var enq struct {
		Jobs []struct {
			ID        string `json:"id"`
			Duplicate bool   `json:"duplicate"`
		} `json:"jobs"`
	}
	var fetched struct {
		Jobs  []job    `json:"jobs"`
		Acked []string `json:"acked"`
	}
	var one job
	tokStr := func(j job) string { return strconv.FormatUint(j.LeaseToken, 10) }

	// enqueue: payload from stdin, back-off, dedup window, run-at.
	run(&enq, "from stdin", "enqueue", "--queue", "js", "--type", "t", "--payload-file", "-", "--key", "k1", "--dedup-window", "1h",
		"--concurrency-key", "tenant-7", "--backoff-initial", "1s", "--backoff-max", "1m", "--max-attempts", "1")
	if len(enq.Jobs) != 1 || enq.Jobs[0].Duplicate {
		t.Fatalf("enqueue: %+v", enq)
	}
	first := enq.Jobs[0].ID
	run(&one, "", "jobs", "get", first)
	if one.ID != first || one.State != "ready" || string(one.Payload) != "from stdin" || one.ConcKey != "tenant-7" {
		t.Fatalf("jobs get: %+v", one)
	}
	run(&one, "", "get", first)
	// fetch, extend, nack (max 1 attempt: dead), then the dead-letter
	// commands on it.
	run(&fetched, "", "fetch", "--queue", "js", "--wait", "5s")
	if len(fetched.Jobs) != 1 || fetched.Jobs[0].ID != first || fetched.Jobs[0].State != "leased" {
		t.Fatalf("fetch: %+v", fetched)
	}
	leased := fetched.Jobs[0]
	var ext struct {
		LeaseDeadline   *time.Time `json:"lease_deadline"`
		CancelRequested bool       `json:"cancel_requested"`
	}
	run(&ext, "", "extend", first, tokStr(leased), "--by", "1m")
	if ext.LeaseDeadline == nil || ext.CancelRequested {
		t.Fatalf("extend: %+v", ext)
	}
	run(&one, "", "nack", first, tokStr(leased), "--error", "bad input")
	if one.State != "dead" {
		t.Fatalf("nack: %+v", one)
	}
	var page struct {
		Jobs []job `json:"jobs"`
	}
	run(&page, "", "dlq", "list", "js")
	if len(page.Jobs) != 1 {
		t.Fatalf("dlq list: %+v", page)
	}
	run(&one, "", "dlq", "inspect", "js", first)
	var ids struct {
		JobIDs []string `json:"job_ids"`
	}
	run(&ids, "", "dlq", "redrive", "js", first)
	if len(ids.JobIDs) != 1 {
		t.Fatalf("redrive: %+v", ids)
	}
	// fetch --ack and ack.
	run(&fetched, "", "fetch", "--queue", "js", "--wait", "5s", "--ack")
	if len(fetched.Acked) != 1 {
		t.Fatalf("fetch --ack: %+v", fetched)
	}
	f := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(f, bytes.Repeat([]byte("x"), 200<<10), 0o600); err != nil { // over argv's limit
		t.Fatal(err)
	}
	run(&enq, "", "enqueue", "--queue", "js", "--payload-file", f)
	big := enq.Jobs[0].ID
	run(&fetched, "", "fetch", "--queue", "js", "--wait", "5s")
	if len(fetched.Jobs) != 1 || len(fetched.Jobs[0].Payload) != 200<<10 {
		t.Fatalf("fetch of the payload file's job: %d jobs", len(fetched.Jobs))
	}
	run(&one, "", "ack", big, tokStr(fetched.Jobs[0]))
	if one.State != "succeeded" {
		t.Fatalf("ack: %+v", one)
	}
	// A dead job to purge, a scheduled one to cancel (both spellings).
	run(&enq, "", "enqueue", "--queue", "js", "--max-attempts", "1")
	run(&fetched, "", "fetch", "--queue", "js", "--wait", "5s")
	run(&one, "", "nack", fetched.Jobs[0].ID, tokStr(fetched.Jobs[0]), "--permanent")
	run(&ids, "", "dlq", "purge", "js", "--all")
	if len(ids.JobIDs) != 1 {
		t.Fatalf("purge: %+v", ids)
	}
	run(&enq, "", "enqueue", "--queue", "js", "--run-at", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--count", "2")
	run(&page, "", "jobs", "list", "--queue", "js", "--state", "scheduled")
	if len(page.Jobs) != 2 {
		t.Fatalf("jobs list scheduled: %+v", page)
	}
	run(&one, "", "jobs", "cancel", enq.Jobs[0].ID)
	run(&one, "", "cancel", enq.Jobs[1].ID)
	if one.State != "cancelled" {
		t.Fatalf("cancel: %+v", one)
	}

	// attempts, from svcd.
	rc, err := results.Dial(sv.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rc.StoreResult(ctx, results.Result{JobID: big, Queue: "js", Type: "echo", LeaseToken: fetched.Jobs[0].LeaseToken, WorkerID: "w1",
		Attempt: 1, Status: results.StatusSucceeded, StartedAt: time.Now().Add(-time.Second), FinishedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var att struct {
		Attempts []struct {
			WorkerID string `json:"worker_id"`
			Status   string `json:"status"`
		} `json:"attempts"`
	}
	run(&att, "", "attempts", big, "--svcd", sv.GRPCAddr())
	if len(att.Attempts) != 1 || att.Attempts[0].WorkerID != "w1" {
		t.Fatalf("attempts: %+v", att)
	}

	// queues.
	var qs struct {
		Queues []struct {
			Name   string           `json:"name"`
			Paused bool             `json:"paused"`
			Counts map[string]int64 `json:"counts"`
		} `json:"queues"`
	}
	run(&qs, "", "queues", "list", "js")
	if len(qs.Queues) != 1 || qs.Queues[0].Counts["succeeded"] != 2 {
		t.Fatalf("queues list: %+v", qs)
	}
	run(&qs, "", "stats")
	// One group: every queue is group 0's, led by the cluster's leader.
	var placed struct {
		GroupCount int `json:"group_count"`
		Queues     []struct {
			Queue    string `json:"queue"`
			Group    int    `json:"group"`
			LeaderID string `json:"leader_id"`
		} `json:"queues"`
	}
	run(&placed, "", "queues", "group", "js")
	if l := c.WaitLeader(10 * time.Second).ID(); placed.GroupCount != 1 || len(placed.Queues) != 1 || placed.Queues[0].Group != 0 || placed.Queues[0].LeaderID != l {
		t.Fatalf("queues group: %+v (leader %s)", placed, l)
	}
	var paused struct {
		Queue  string `json:"queue"`
		Paused bool   `json:"paused"`
	}
	// One group: a move to group 0 is where the queue is; no placements.
	var moved struct {
		Queue, Phase string
		Group        int
	}
	run(&moved, "", "queues", "move", "js", "--to", "0")
	if moved.Queue != "js" || moved.Group != 0 || moved.Phase != "done" {
		t.Fatalf("queues move: %+v", moved)
	}
	var pls struct {
		Placements []json.RawMessage `json:"placements"`
	}
	run(&pls, "", "queues", "placements")
	if len(pls.Placements) != 0 {
		t.Fatalf("queues placements: %+v", pls)
	}
	run(&paused, "", "queues", "pause", "js")
	run(&paused, "", "queues", "resume", "js")
	if paused.Paused {
		t.Fatalf("resume: %+v", paused)
	}

	// schedules: put, get, list, pause, resume, apply (twice: the second
	// changes nothing), delete.
	var scheds struct {
		Schedules []struct {
			Name     string `json:"name"`
			Paused   bool   `json:"paused"`
			Action   string `json:"action"`
			TimeZone string `json:"time_zone"`
		} `json:"schedules"`
	}
	run(&scheds, "", "schedules", "put", "nightly", "--queue", "js", "--type", "t", "--cron", "30 2 * * *", "--tz", "Europe/Paris", "--overlap", "allow")
	run(&scheds, "", "schedules", "get", "nightly")
	if len(scheds.Schedules) != 1 || scheds.Schedules[0].TimeZone != "Europe/Paris" {
		t.Fatalf("schedules get: %+v", scheds)
	}
	run(&scheds, "", "schedules", "pause", "nightly")
	if !scheds.Schedules[0].Paused {
		t.Fatalf("schedules pause: %+v", scheds)
	}
	run(&scheds, "", "schedules", "resume", "nightly")
	file := "schedules:\n  - name: hourly\n    cron: \"@hourly\"\n    catch_up: 2\n    job: {queue: js, type: t, payload: hi}\n"
	run(&scheds, file, "schedules", "apply", "-f", "-", "--prune")
	if len(scheds.Schedules) != 2 || scheds.Schedules[0].Action != "created" || scheds.Schedules[1].Action != "deleted" {
		t.Fatalf("schedules apply: %+v", scheds)
	}
	run(&scheds, file, "schedules", "apply", "-f", "-")
	if len(scheds.Schedules) != 1 || scheds.Schedules[0].Action != "unchanged" {
		t.Fatalf("schedules apply again: %+v", scheds)
	}
	run(&scheds, "", "schedules", "list")
	if len(scheds.Schedules) != 1 || scheds.Schedules[0].Name != "hourly" {
		t.Fatalf("schedules list: %+v", scheds)
	}
	run(nil, "", "schedules", "delete", "hourly")

	// cluster and snapshots.
	var views []struct {
		Addr string `json:"addr"`
		Node *struct {
			State      string            `json:"state"`
			GroupCount int               `json:"group_count"`
			Groups     []json.RawMessage `json:"groups"`
		} `json:"node"`
	}
	run(&views, "", "cluster", "status")
	if len(views) != 3 || views[0].Node == nil || views[0].Node.GroupCount != 1 || views[0].Node.Groups != nil {
		t.Fatalf("cluster status: %+v (one group: group_count 1, no groups)", views)
	}
	run(&views, "", "status")
	run(nil, "", "cluster", "members")
	run(nil, "", "cluster", "transfer")
	snap := filepath.Join(t.TempDir(), "b.snap")
	run(nil, "", "snapshot", "save", snap)
	run(nil, "", "snapshot", "restore", snap, "--yes")

	// config in etcd.
	e := []string{"--etcd", etcd.Endpoint(), "--etcd-prefix", prefix}
	run(nil, "", append([]string{"config", "set", "queue", "js", "--max-in-flight", "4"}, e...)...)
	run(nil, "", append([]string{"config", "set", "defaults", "--rate", "100"}, e...)...)
	run(nil, "", append([]string{"config", "set", "log-level", "debug"}, e...)...)
	run(nil, "", append([]string{"config", "show"}, e...)...)
	run(nil, "", append([]string{"config", "unset", "queue", "js"}, e...)...)

	// bench: one JSON line per run.
	run(nil, "", "bench", "enqueue", "--duration", "200ms", "--clients", "1")

	// cluster remove and add last: a follower leaves and comes back.
	clusterRemoveAdd(t, c, run)

	all := map[string]bool{}
	leafCommands(rootCmd(), "", all)
	var missing []string
	// Commands that need a cluster of several groups run with -o json in
	// TestGroupsCommands instead.
	elsewhere := map[string]bool{"queues partition": true}
	for name := range all {
		if !ran[name] && !elsewhere[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("commands not run with -o json by this test: %v", missing)
	}
}

// clusterRemoveAdd removes a follower with `cluster remove` and adds it
// back (same id and addresses, still running) with `cluster add`.
func clusterRemoveAdd(t *testing.T, c *testcluster.Cluster, run func(any, string, ...string)) {
	t.Helper()
	leader := c.WaitLeader(10 * time.Second).ID()
	var victim *testcluster.Member
	for _, m := range c.Members() {
		if m.ID != leader {
			victim = m
			break
		}
	}
	var rm struct {
		Removed string `json:"removed"`
	}
	run(&rm, "", "cluster", "remove", victim.ID)
	if rm.Removed != victim.ID {
		t.Fatalf("remove: %+v", rm)
	}
	var add struct {
		Added string `json:"added"`
	}
	run(&add, "", "cluster", "add", victim.ID, victim.RaftAddr, victim.GRPCAddr)
	if add.Added != victim.ID {
		t.Fatalf("add: %+v", add)
	}
}

// Bad input is refused before anything is sent: negative durations, an
// unknown queue without --create, both payload flags.
func TestRefusals(t *testing.T) {
	c := testcluster.New(t, 1, nil)
	b := c.Addrs()[0]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"enqueue", "--delay", "-5s"}, "must not be negative"},
		{[]string{"enqueue", "--dedup-window", "-1s", "--key", "k"}, "must not be negative"},
		{[]string{"enqueue", "--delay", "1s", "--run-at", "2030-01-01T00:00:00Z"}, "not both"},
		{[]string{"enqueue", "--run-at", "tomorrow"}, "RFC 3339"},
		{[]string{"enqueue", "--payload", "a", "--payload-file", "-"}, "not both"},
		{[]string{"queues", "pause", "nosuch"}, `unknown queue "nosuch"`},
		{[]string{"queues", "list", "nosuch"}, `unknown queue "nosuch"`},
		{[]string{"jobs", "list", "--queue", "nosuch"}, `unknown queue "nosuch"`},
		{[]string{"dlq", "list", "nosuch"}, `unknown queue "nosuch"`},
		{[]string{"nack", "id", "notanumber"}, "lease token"},
	} {
		_, err := ctlIn(t, "", append([]string{"--brokers", b}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("brokerctl %v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	// Nothing was created by the refusals.
	st, err := c.Client().QueueStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 0 {
		t.Fatalf("refused commands created queues: %v", st)
	}
	// --create pauses a new queue on purpose.
	if _, err := ctlIn(t, "", "--brokers", b, "queues", "pause", "fresh", "--create"); err != nil {
		t.Fatal(err)
	}
	st, _ = c.Client().QueueStats(context.Background(), "fresh")
	if len(st) != 1 || !st[0].Paused {
		t.Fatalf("pause --create: %v", st)
	}
}

// A refused port fails with a message naming the address instead of
// waiting out --timeout.
func TestRefusedConnectionNamesTheAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = ctlIn(t, "", "--brokers", addr, "--timeout", "1h", "queues", "list")
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "cannot reach any broker") {
		t.Fatalf("err = %v, want one naming %s", err, addr)
	}
	// Under -o json the error is JSON too.
	var buf bytes.Buffer
	printError(&buf, jsonRequested([]string{"-o", "json", "stats"}), err)
	var v struct {
		Error struct{ Message string } `json:"error"`
	}
	if json.Unmarshal(buf.Bytes(), &v) != nil || !strings.Contains(v.Error.Message, addr) {
		t.Fatalf("json error: %s", buf.String())
	}
}

func TestVersionFlag(t *testing.T) {
	out, err := ctlIn(t, "", "--version")
	if err != nil || !strings.HasPrefix(out, "brokerctl ") || !strings.Contains(out, "commit") || !strings.Contains(out, "go1.") {
		t.Fatalf("--version: %q %v", out, err)
	}
}
