package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/etcdtest"
)

// Data written before Stop is there after Start, on the same endpoint; in
// between, calls fail.
func TestStopStartKeepsData(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := s.Prefix("x") + "/k"
	if _, err := c.Put(ctx, key, "v"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	short, c2 := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := c.Get(short, key); err == nil {
		t.Fatal("get succeeded while the server was stopped")
	}
	c2()
	s.Start()
	r, err := c.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v", r.Kvs)
	}
}
