package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/svcd/server"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// lockedBuffer is a bytes.Buffer safe for the worker's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWorkflowExample runs the example against a real 3-node cluster and
// svcd: every step runs after its parents, and each child got its
// parents' stored outputs.
func TestWorkflowExample(t *testing.T) {
	c := testcluster.New(t, 3, nil)
	b := svcdtest.SQLite(t)
	s, err := server.New(context.Background(), server.Config{
		ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0",
		DB: b.Driver, DSN: b.DSN, DataDir: b.DataDir,
		Brokers: server.BrokerCheck{Disabled: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out lockedBuffer
	if err := run(ctx, c.Addrs(), s.GRPCAddr(), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"fetch(cat.jpg)\n",
		"resize(fetch(cat.jpg))\n",
		"thumbnail(fetch(cat.jpg))\n",
		"publish(resize(fetch(cat.jpg)),thumbnail(fetch(cat.jpg)))\n",
		"publish's parents: 2\n",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "publish(") < strings.Index(got, "resize(") || strings.Index(got, "resize(") < strings.Index(got, "fetch(cat.jpg)\n") {
		t.Fatalf("steps out of order:\n%s", got)
	}
}
