package brokercheck_test

import (
	"context"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/svcd/server"
)

// BenchmarkStoreResultVerified measures what verifying each result with
// the broker leader costs: stored results per second over gRPC with 16
// concurrent callers, SQLite, against a real 3-node cluster (plaintext,
// auth off, as in a plain make run), with verification ("verified": one
// linearizable GetJob per result) and without. Every result is for its
// own leased job with its real token. Run:
//
//	go test -run '^$' -bench StoreResultVerified -benchtime 3000x ./svcd/brokercheck
func BenchmarkStoreResultVerified(b *testing.B) {
	c := testcluster.New(b, 3, nil)
	cl := c.Client()
	for _, name := range []string{"verified", "unverified"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			var jobs []*raftqv1.Job
			for len(jobs) < b.N {
				n := min(1000, b.N-len(jobs))
				specs := make([]*raftqv1.JobSpec, n)
				for i := range specs {
					specs[i] = &raftqv1.JobSpec{Queue: "bench-" + name, Type: "t", LeaseDuration: durationpb.New(time.Hour)}
				}
				if _, err := cl.Enqueue(ctx, specs...); err != nil {
					b.Fatal(err)
				}
				got, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"bench-" + name}, MaxJobs: int32(n), MaxWait: durationpb.New(10 * time.Second)})
				if err != nil {
					b.Fatal(err)
				}
				jobs = append(jobs, got...)
			}
			check := server.BrokerCheck{Addrs: c.Addrs()}
			if name == "unverified" {
				check = server.BrokerCheck{Disabled: true}
			}
			srv, err := server.New(ctx, server.Config{ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: "sqlite",
				DataDir: filepath.Join(b.TempDir(), "svcd"), Brokers: check})
			if err != nil {
				b.Fatal(err)
			}
			srv.Start()
			defer srv.Shutdown(ctx)
			cc, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			rc := raftqv1.NewResultsClient(cc)
			output := make([]byte, 256)
			var next atomic.Int64
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					j := jobs[next.Add(1)-1]
					_, err := rc.StoreResult(ctx, &raftqv1.StoreResultRequest{JobId: j.GetId(), Queue: j.GetQueue(), Type: j.GetType(),
						LeaseToken: j.GetLeaseToken(), Status: raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED, Output: output})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
		})
	}
}
