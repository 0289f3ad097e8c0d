package workerd_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/worker"
	"github.com/raftq/raftq/workerd"
)

// BenchmarkEcho measures jobs/s through an in-process workerd running the
// echo handler against an in-process 3-node cluster (real Raft, fsync on),
// at concurrency 1, 8 and 64. Jobs are enqueued before the timer starts;
// the timer covers fetch, run, record (no-op) and ack of b.N jobs.
//
//	go test ./workerd -run '^$' -bench BenchmarkEcho -benchtime 3000x
func BenchmarkEcho(b *testing.B) {
	c := testcluster.New(b, 3, nil)
	cl := c.Client()
	for _, conc := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			queue := fmt.Sprintf("bench-%d-%d", conc, time.Now().UnixNano())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			for left := b.N; left > 0; {
				n := min(left, 1000)
				specs := make([]*raftqv1.JobSpec, n)
				for i := range specs {
					specs[i] = client.NewJob(queue, "echo", []byte("x"))
				}
				if _, err := cl.Enqueue(ctx, specs...); err != nil {
					b.Fatal(err)
				}
				left -= n
			}
			var acked atomic.Int64
			all := make(chan struct{})
			b.ResetTimer()
			start := time.Now()
			_, stop := runDaemon(b, workerd.Config{
				Brokers:  c.Addrs(),
				Queues:   []worker.QueueConfig{{Name: queue, Concurrency: conc}},
				PollWait: time.Second,
				OnSettle: func(_ *worker.Job, s worker.Settlement) {
					if s.Action == worker.ActionAcked && acked.Add(1) == int64(b.N) {
						close(all)
					}
				},
			})
			select {
			case <-all:
			case <-ctx.Done():
				b.Fatalf("only %d of %d jobs acked", acked.Load(), b.N)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stop()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
		})
	}
}
