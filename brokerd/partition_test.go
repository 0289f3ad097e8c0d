package brokerd_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// A queue partitioned over every group: jobs without a key spread over
// the partitions, a key always picks the same one (a retry is a
// duplicate, a concurrency key's jobs share a partition), the SDK's
// stream spreads too; one worker's Fetch and Consume take from every
// partition; stats add up; pausing pauses every partition; and the queue
// can be neither partitioned again nor moved.
func TestGroupsPartitionedQueue(t *testing.T) {
	const groups = 3
	c := groupsCluster(t, groups)
	ctx := testutil.Context(t, 90*time.Second)
	addrs := c.Addrs()
	adm := raftqv1.NewAdminClient(mustConn(t, addrs[1]))
	const q = "hot"
	home := placement.Queue(q, groups)
	res, err := adm.PartitionQueue(ctx, &raftqv1.PartitionQueueRequest{Queue: q, Groups: []uint32{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Placement; len(p.Partitions) != 3 || p.Partitions[0] != home || p.Group != home {
		t.Fatalf("PartitionQueue answered %v (home group %d)", p, home)
	}

	in := dial(t, addrs[0])
	perGroup := map[uint32]int{}
	ids := map[string]bool{}
	put := func(jobs ...*raftqv1.JobSpec) []*raftqv1.EnqueueResult {
		t.Helper()
		r, err := in.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: jobs})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range r.Results {
			if !x.Duplicate {
				g, _ := placement.Job(x.JobId, groups)
				perGroup[g]++
				ids[x.JobId] = true
			}
		}
		return r.Results
	}
	// 30 jobs without keys in batches of 6: spread.
	for i := 0; i < 5; i++ {
		var batch []*raftqv1.JobSpec
		for k := 0; k < 6; k++ {
			batch = append(batch, &raftqv1.JobSpec{Queue: q, Type: "t"})
		}
		put(batch...)
	}
	for g := uint32(0); g < groups; g++ {
		if perGroup[g] < 5 {
			t.Fatalf("jobs per partition %v: want them spread over all 3", perGroup)
		}
	}
	// Keys: the same idempotency key is a duplicate; one concurrency key's
	// jobs share a partition.
	first := put(&raftqv1.JobSpec{Queue: q, Type: "t", IdempotencyKey: "k1"})[0]
	again := put(&raftqv1.JobSpec{Queue: q, Type: "t", IdempotencyKey: "k1"})[0]
	if !again.Duplicate || again.JobId != first.JobId {
		t.Fatalf("retry of k1: %v, first %v", again, first)
	}
	var tenantGroup = -1
	for i := 0; i < 8; i++ {
		r := put(&raftqv1.JobSpec{Queue: q, Type: "t", ConcurrencyKey: "tenant-a"})[0]
		g, _ := placement.Job(r.JobId, groups)
		if tenantGroup >= 0 && int(g) != tenantGroup {
			t.Fatalf("concurrency key tenant-a in groups %d and %d", tenantGroup, g)
		}
		tenantGroup = int(g)
	}
	// The SDK's stream spreads as well.
	cl, err := client.New(addrs, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	streamed := map[uint32]int{}
	for i := 0; i < 12; i++ {
		id, _, err := cl.EnqueueOne(ctx, q, "t", []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		g, _ := placement.Job(id, groups)
		streamed[g]++
		perGroup[g]++
		ids[id] = true
	}
	if len(streamed) < 2 {
		t.Fatalf("streamed jobs per partition %v: want them spread", streamed)
	}

	st, err := in.QueueStats(ctx, &raftqv1.QueueStatsRequest{Queues: []string{q}})
	if err != nil || len(st.Queues) != 1 || st.Queues[0].Ready != int64(len(ids)) {
		t.Fatalf("stats %v %v: want %d ready over the partitions", st, err, len(ids))
	}
	// Paused: every partition.
	if _, err := adm.PauseQueue(ctx, &raftqv1.PauseQueueRequest{Queue: q}); err != nil {
		t.Fatal(err)
	}
	f, err := in.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 50, MaxWait: durationpb.New(300 * time.Millisecond), WorkerId: "w"})
	if err != nil || len(f.Jobs) != 0 {
		t.Fatalf("fetch of a paused partitioned queue: %d jobs, %v", len(f.GetJobs()), err)
	}
	if _, err := adm.ResumeQueue(ctx, &raftqv1.ResumeQueueRequest{Queue: q}); err != nil {
		t.Fatal(err)
	}
	// One worker takes every partition's jobs: half by Fetch, the rest on
	// one Consume stream.
	got := map[string]bool{}
	for len(got) < len(ids)/2 {
		f, err := in.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{q}, MaxJobs: 8, MaxWait: durationpb.New(time.Second), WorkerId: "w"})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range f.Jobs {
			got[j.Id] = true
			if _, err := in.Ack(ctx, &raftqv1.AckRequest{JobId: j.Id, LeaseToken: j.LeaseToken}); err != nil {
				t.Fatal(err)
			}
		}
	}
	cs, err := in.Consume(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.Send(&raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Open{Open: &raftqv1.ConsumeOpen{Queues: []string{q}, WorkerId: "wc", Credit: 4}}}); err != nil {
		t.Fatal(err)
	}
	for len(got) < len(ids) {
		m, err := cs.Recv()
		if err != nil {
			t.Fatalf("consume after %d of %d jobs: %v", len(got), len(ids), err)
		}
		j := m.GetJob()
		if j == nil {
			continue
		}
		if got[j.Id] {
			t.Fatalf("job %s delivered twice", j.Id)
		}
		got[j.Id] = true
		if _, err := in.Ack(ctx, &raftqv1.AckRequest{JobId: j.Id, LeaseToken: j.LeaseToken}); err != nil {
			t.Fatal(err)
		}
		if err := cs.Send(&raftqv1.ConsumeRequest{Frame: &raftqv1.ConsumeRequest_Credit{Credit: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = cs.CloseSend()
	for id := range ids {
		if !got[id] {
			t.Fatalf("job %s never delivered", id)
		}
	}

	// Set once; never moved.
	if _, err := adm.PartitionQueue(ctx, &raftqv1.PartitionQueueRequest{Queue: q, Groups: []uint32{0, 1}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("partitioned again: %v", err)
	}
	if _, err := adm.MoveQueue(ctx, &raftqv1.MoveQueueRequest{Queue: q, ToGroup: (home + 1) % groups}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("move of a partitioned queue: %v", err)
	}
	// Bad requests change nothing.
	for _, bad := range []*raftqv1.PartitionQueueRequest{
		{Queue: "other", Groups: []uint32{7}},
		{Queue: "other", Groups: []uint32{placement.Queue("other", groups)}},
		{Queue: "other", Groups: []uint32{1, 1}},
		{Queue: "", Groups: []uint32{0, 1}},
	} {
		if _, err := adm.PartitionQueue(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("PartitionQueue %v: %v", bad, err)
		}
	}
	// A queue whose group holds idempotency keys is refused.
	if _, err := in.Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "keyed", Type: "t", IdempotencyKey: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.PartitionQueue(ctx, &raftqv1.PartitionQueueRequest{Queue: "keyed", Groups: []uint32{0, 1, 2}}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("partition of a queue with keys: %v", err)
	}
	ls, err := adm.ListPlacements(ctx, &raftqv1.ListPlacementsRequest{})
	if err != nil || len(ls.Placements) != 1 || ls.Placements[0].Queue != q {
		t.Fatalf("placements %v %v", ls, err)
	}
}
