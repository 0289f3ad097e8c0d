package limits

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "orders.eu-1", "Q:1_x", strings.Repeat("a", 128)} {
		if err := CheckName("queue", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "a b", "a/b", "é", strings.Repeat("a", 129), "a\n"} {
		if err := CheckName("queue", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func ctxFrom(addr string) context.Context {
	a, _ := net.ResolveTCPAddr("tcp", addr)
	return peer.NewContext(context.Background(), &peer.Peer{Addr: a})
}

func TestPerConn(t *testing.T) {
	p := NewPerConn(2)
	c1, c2 := ctxFrom("127.0.0.1:1000"), ctxFrom("127.0.0.1:1001")
	r1, err := p.Acquire(c1)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p.Acquire(c1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Acquire(c1); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third waiter on one connection: %v", err)
	}
	r3, err := p.Acquire(c2)
	if err != nil {
		t.Fatalf("another connection is not affected: %v", err)
	}
	r1()
	r1() // twice is once
	if _, err := p.Acquire(c1); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r2()
	r3()
	if NewPerConn(0) == nil {
		t.Fatal()
	}
	if _, err := NewPerConn(0).Acquire(c1); err != nil {
		t.Fatal("unlimited refused")
	}
}

func TestDeadline(t *testing.T) {
	ic := Deadline(func(string, any) time.Duration { return time.Minute })
	var got time.Time
	h := func(ctx context.Context, _ any) (any, error) { got, _ = ctx.Deadline(); return nil, nil }
	ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x"}, h)
	if got.IsZero() || time.Until(got) > time.Minute {
		t.Fatalf("no deadline was set: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/x"}, h)
	if !got.Equal(want) {
		t.Fatal("an earlier client deadline was replaced")
	}
}
