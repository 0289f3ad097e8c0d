package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Nodes running several Raft groups bootstrap every group through etcd,
// and a node that joins later through etcd becomes a member of every
// group and receives every group's jobs.
func TestEtcdBootstrapAndJoinWithGroups(t *testing.T) {
	const groups = 3
	s := etcdtest.New(t)
	c := newECluster(t, s, s.Client())
	c.groups = groups
	ids := []string{"n1", "n2", "n3"}
	c.startAll(ids, 3)
	c.waitOneCluster(ids, 30*time.Second)
	members := func(id string, g int) []string {
		d := c.node(id)
		if d == nil {
			return nil
		}
		cf := d.Node.Groups()[g].Raft().GetConfiguration()
		if cf.Error() != nil {
			return nil
		}
		var out []string
		for _, srv := range cf.Configuration().Servers {
			out = append(out, string(srv.ID))
		}
		slices.Sort(out)
		return out
	}
	testutil.WaitFor(t, 30*time.Second, "every group of every node has the three voters and a ready leader", func() bool {
		for g := 0; g < groups; g++ {
			ready := 0
			for _, id := range ids {
				if !slices.Equal(members(id, g), ids) {
					return false
				}
				if c.node(id).Node.Groups()[g].IsLeaderReady() {
					ready++
				}
			}
			if ready != 1 {
				return false
			}
		}
		return true
	})
	var addrs []string
	for _, id := range ids {
		addrs = append(addrs, c.node(id).Node.GRPCAddr())
	}
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	jobs := map[string]uint32{}
	for i := 0; len(jobs) < 3*groups; i++ {
		q := fmt.Sprintf("q%d", i)
		res, err := cl.Enqueue(ctx, &raftqv1.JobSpec{Queue: q, Type: "t"})
		if err != nil {
			t.Fatal(err)
		}
		jobs[res[0].JobId] = placement.Queue(q, groups)
	}
	c.start("n4", 3)
	all := append(slices.Clone(ids), "n4")
	testutil.WaitFor(t, 30*time.Second, "n4 is a voter of every group and holds every job", func() bool {
		for g := 0; g < groups; g++ {
			if !slices.Equal(members("n1", g), all) || !slices.Equal(members("n4", g), all) {
				return false
			}
		}
		for id, g := range jobs {
			if _, ok := c.node("n4").Node.Groups()[g].FSM().Get(id); !ok {
				return false
			}
		}
		return true
	})

	// The placement table is mirrored to etcd: a queue moved to another
	// group appears under P/placement/<queue>, and says done once moved.
	q := "q0"
	to := (placement.Queue(q, groups) + 1) % groups
	if _, err := cl.MoveQueue(ctx, q, to); err != nil {
		t.Fatal(err)
	}
	// Its one job is taken, so the old group drains.
	js, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 1, WorkerId: "w", MaxWait: durationpb.New(5 * time.Second)})
	if err != nil || len(js) != 1 {
		t.Fatalf("fetch %v %v", js, err)
	}
	if err := cl.Ack(ctx, js[0].GetId(), js[0].GetLeaseToken()); err != nil {
		t.Fatal(err)
	}
	var got discovery.Placement
	testutil.WaitFor(t, 30*time.Second, "etcd mirrors the done move", func() bool {
		r, err := s.Client().Get(ctx, discovery.PlacementKey(c.prefix, q))
		if err != nil || len(r.Kvs) != 1 {
			return false
		}
		if err := json.Unmarshal(r.Kvs[0].Value, &got); err != nil {
			t.Fatalf("mirrored placement %q: %v", r.Kvs[0].Value, err)
		}
		return got.Phase == "done" && got.Group == to && got.Queue == q
	})
}
