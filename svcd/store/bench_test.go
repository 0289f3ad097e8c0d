package store_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/raftq/raftq/svcd/store"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// BenchmarkStoreResult measures stored results per second through the store
// (one transaction per result, durable commit) with 16 concurrent writers,
// as many workers finishing jobs at once would. Run:
//
//	go test -run '^$' -bench StoreResult -benchtime 5000x ./svcd/store
func BenchmarkStoreResult(b *testing.B) {
	// sqlite-normal shows what synchronous=NORMAL (no fsync per commit)
	// would buy; svcd runs FULL.
	for _, name := range []string{"sqlite", "sqlite-normal", "postgres"} {
		b.Run(name, func(b *testing.B) {
			var be svcdtest.Backend
			if name == "postgres" {
				be = svcdtest.Postgres(b)
			} else {
				be = svcdtest.SQLite(b)
			}
			cfg := cfgFor(be)
			if name == "sqlite-normal" {
				cfg.Synchronous = "NORMAL"
			}
			s, err := store.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			output := make([]byte, 256)
			var next atomic.Int64
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					r := res(fmt.Sprintf("bench-%d", next.Add(1)), 1, store.StatusSucceeded)
					r.Output = output
					if _, err := s.StoreResult(ctx, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
		})
	}
}
