package main_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Real processes with each group on 3 of 4 nodes (--replicas 3): the
// leader of a group is SIGKILLed; the group's other members elect a new
// one and every node, those that do not run the group included, sends the
// group's calls there; the killed node restarts from its data dir and
// opens the groups it runs (never bootstrapping one again); nothing
// acknowledged is lost and each group's members converge.
func TestRealProcessesReplicasSigkillRestart(t *testing.T) {
	bin, dir := realProcesses(t)
	const groups = 3
	procs, addrs := startCluster(t, bin, dir, 4, "--groups", fmt.Sprint(groups), "--replicas", "3")
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	qs := placement.QueuesPerGroup("q", groups)
	var ids []string
	enqueue := func(n int) {
		for i := 0; i < n; i++ {
			res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: qs[i%groups], Type: "t"})
			if err != nil {
				t.Fatalf("enqueue: %v", err)
			}
			ids = append(ids, res[0].JobId)
		}
	}
	enqueue(30)
	// Group 1's leader, and the nodes that run group 1.
	var victim *proc
	var members []string
	for victim == nil || len(members) != 3 {
		members = members[:0]
		for _, p := range procs {
			st, err := cl.Status(ctx, p.grpc)
			if err != nil {
				continue
			}
			for _, g := range st.GetGroups() {
				if g.GetGroup() != 1 {
					continue
				}
				if g.GetState() == "Leader" {
					victim = p
				}
				if g.GetState() != "Remote" {
					members = append(members, p.id)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
		if ctx.Err() != nil {
			t.Fatalf("group 1 has no leader on 3 members: %v", members)
		}
	}
	_ = victim.cmd.Process.Kill()
	<-victim.done
	// Through every other node, a plain connection each (no route map):
	// group 1's calls reach its new leader, from non-members too.
	for _, p := range procs {
		if p == victim {
			continue
		}
		pc, err := client.New([]string{p.grpc}, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := pc.Enqueue(ctx, &raftqv1.JobSpec{Queue: qs[1], Type: "t"})
		pc.Close()
		if err != nil {
			t.Fatalf("enqueue into group 1 via %s (runs it: %v) with its leader killed: %v", p.id, slices.Contains(members, p.id), err)
		}
		ids = append(ids, res[0].JobId)
	}
	enqueue(15)
	victim.start(t, bin)
	enqueue(15)
	for _, id := range ids {
		if _, err := cl.GetJob(ctx, id, 0); err != nil {
			t.Fatalf("job %s lost: %v", id, err)
		}
	}
	// The groups it runs, as it says itself once it serves again (its
	// groups open before its gRPC port does).
	st, err := cl.Status(ctx, victim.grpc)
	for err != nil && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		st, err = cl.Status(ctx, victim.grpc)
	}
	if err != nil {
		t.Fatalf("%s after its restart: %v", victim.id, err)
	}
	runs := 0
	for _, g := range st.GetGroups() {
		if g.GetGroup() != 0 && g.GetState() != "Remote" {
			runs++
		}
	}
	b, _ := os.ReadFile(victim.dir + ".log")
	if runs == 0 {
		t.Fatalf("%s runs no group but 0 after its restart: %v", victim.id, st.GetGroups())
	}
	// Group 0 and each group it runs: bootstrapped once, restarted once.
	if got := strings.Count(string(b), "bootstrapped new cluster"); got != 1+runs {
		t.Fatalf("%s bootstrapped %d times, want %d (group 0 and its %d other groups):\n%s", victim.id, got, 1+runs, runs, b)
	}
	if got := strings.Count(string(b), "restarting from existing raft state"); got != 1+runs {
		t.Fatalf("%s restarted %d groups from disk, want %d:\n%s", victim.id, got, 1+runs, b)
	}
	for g := 0; g < groups; g++ {
		waitConverged(t, metadata.AppendToOutgoingContext(ctx, placement.Header, fmt.Sprint(g)), cl, procs)
	}
}
