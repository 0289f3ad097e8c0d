package server_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// BenchmarkGRPCStoreResult measures stored results per second end to end:
// gRPC over loopback, the Go kit middlewares, validation and one durable
// transaction per result, with 16 concurrent callers. Run:
//
//	go test -run '^$' -bench GRPCStoreResult -benchtime 5000x ./svcd/server
func BenchmarkGRPCStoreResult(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			var be svcdtest.Backend
			if name == "sqlite" {
				be = svcdtest.SQLite(b)
			} else {
				be = svcdtest.Postgres(b)
			}
			s := svcdtest.StartWith(b, configFor(be))
			cl := raftqv1.NewResultsClient(dial(b, s.GRPCAddr()))
			var next atomic.Int64
			output := make([]byte, 256)
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := goodPB()
					r.JobId = fmt.Sprint("bench-", next.Add(1))
					r.Output = output
					if _, err := cl.StoreResult(context.Background(), r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
		})
	}
}
