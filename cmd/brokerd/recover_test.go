package main_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// A cluster that lost its quorum for good comes back through `brokerd
// recover`: of three real processes, two are SIGKILLed and their data
// wiped; the survivor, stopped too, is recovered (refused while it still
// runs), starts and leads alone; two fresh nodes join; every acknowledged
// job the survivor had is there and fetchable, and the new cluster takes
// writes and converges.
func TestRecoverLostQuorum(t *testing.T) {
	bin, dir := realProcesses(t)
	procs, addrs := startCluster(t, bin, dir, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var ids []string
	for i := 0; i < 30; i++ {
		res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: "q", Type: "t", Payload: []byte{byte(i)}})
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		ids = append(ids, res[0].JobId)
	}
	// Every node has applied every acknowledged job; a follower survives.
	waitConverged(t, ctx, cl, procs)
	var survivor *proc
	for _, p := range procs {
		if st, err := cl.Status(ctx, p.grpc); err == nil && st.State != "Leader" {
			survivor = p
		}
	}
	if survivor == nil {
		t.Fatal("no follower")
	}

	recoverCmd := func() (string, error) {
		out, err := exec.Command(bin, "recover", "--id", survivor.id, "--data-dir", survivor.dir, "--raft-addr", survivor.raft).CombinedOutput()
		return string(out), err
	}
	// Refused while the node runs: its data dir is locked.
	if out, err := recoverCmd(); err == nil || !strings.Contains(out, "another brokerd") {
		t.Fatalf("recover of a running node: %v\n%s", err, out)
	}

	for _, p := range procs {
		_ = p.cmd.Process.Kill()
		<-p.done
		if p != survivor {
			if err := os.RemoveAll(p.dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := recoverCmd()
	if err != nil || !strings.Contains(out, "voters are now "+survivor.id+"="+survivor.raft) {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	survivor.start(t, bin)
	cl2, err := client.New([]string{survivor.grpc}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	st := waitStatus(t, ctx, cl2, survivor.grpc, func(st *raftqv1.StatusResponse) bool {
		return st.State == "Leader" && len(st.Members) == 1
	})
	if st.Members[0].NodeId != survivor.id {
		t.Fatalf("recovered survivor's members: %v", st.Members)
	}

	// Two fresh nodes join the survivor.
	fresh := []*proc{newProc(t, dir, 4), newProc(t, dir, 5)}
	for _, p := range fresh {
		p.args = []string{"--id", p.id, "--data-dir", p.dir, "--grpc-addr", p.grpc, "--raft-addr", p.raft,
			"--join", survivor.grpc, "--log-level", "info"}
		p.start(t, bin)
	}
	waitStatus(t, ctx, cl2, survivor.grpc, func(st *raftqv1.StatusResponse) bool {
		voters := 0
		for _, m := range st.Members {
			if m.Voter {
				voters++
			}
		}
		return voters == 3
	})
	cluster := append([]*proc{survivor}, fresh...)
	if _, err := cl2.Enqueue(ctx, &raftqv1.JobSpec{Queue: "after", Type: "t"}); err != nil {
		t.Fatalf("enqueue after recovery: %v", err)
	}
	waitConverged(t, ctx, cl2, cluster)

	// Every acknowledged job is there, and a worker gets each one.
	for _, id := range ids {
		if _, err := cl2.GetJob(ctx, id, 0); err != nil {
			t.Fatalf("job %s lost: %v", id, err)
		}
	}
	got := map[string]bool{}
	for len(got) < len(ids) {
		jobs, err := cl2.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"q"}, MaxJobs: int32(len(ids)), WorkerId: "w"})
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if len(jobs) == 0 {
			t.Fatalf("fetched %d of %d jobs, then nothing", len(got), len(ids))
		}
		for _, j := range jobs {
			got[j.Id] = true
		}
	}
	for _, id := range ids {
		if !got[id] {
			t.Fatalf("job %s not fetched", id)
		}
	}
}

// waitStatus polls addr's Status until ok holds, failing when ctx ends.
func waitStatus(t *testing.T, ctx context.Context, cl *client.Client, addr string, ok func(*raftqv1.StatusResponse) bool) *raftqv1.StatusResponse {
	t.Helper()
	var last any
	for ctx.Err() == nil {
		st, err := cl.Status(ctx, addr)
		if err == nil && ok(st) {
			return st
		}
		last = st
		if err != nil {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never reached the awaited status; last %v", addr, last)
	return nil
}

// waitConverged waits until every process reports the same state hash.
func waitConverged(t *testing.T, ctx context.Context, cl *client.Client, procs []*proc) {
	t.Helper()
	for ctx.Err() == nil {
		hashes := map[string]bool{}
		for _, p := range procs {
			if st, err := cl.StatusWithHash(ctx, p.grpc); err == nil {
				hashes[st.StateHash] = true
			} else {
				hashes["unreachable"] = true
			}
		}
		if len(hashes) == 1 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("nodes did not converge")
}
