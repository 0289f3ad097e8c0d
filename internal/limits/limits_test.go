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

// TestValidNameIsNameRE: the hand-written check answers as the rule it
// stands for, on every string of up to 3 bytes over an alphabet with each
// class of byte (and some over the length limit), and on fuzzed input.
func TestValidNameIsNameRE(t *testing.T) {
	alphabet := []byte{'a', 'Z', '0', '9', '_', '.', ':', '-', ' ', '/', 0, 0xc3, 0xa9, '\n', '@', '`', '{', '[', 'z' + 1}
	var walk func(prefix []byte, depth int)
	walk = func(prefix []byte, depth int) {
		s := string(prefix)
		if got, want := ValidName(s), NameRE.MatchString(s); got != want {
			t.Fatalf("ValidName(%q) = %v, NameRE says %v", s, got, want)
		}
		if depth == 0 {
			return
		}
		for _, c := range alphabet {
			walk(append(prefix, c), depth-1)
		}
	}
	walk(nil, 3)
	for _, n := range []int{127, 128, 129, 200} {
		for _, s := range []string{strings.Repeat("a", n), "a" + strings.Repeat("-", n-1), strings.Repeat("a", n-1) + "/"} {
			if got, want := ValidName(s), NameRE.MatchString(s); got != want {
				t.Fatalf("ValidName(%d bytes %q...) = %v, NameRE says %v", len(s), s[:8], got, want)
			}
		}
	}
}

// FuzzValidName holds ValidName to NameRE on any input.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", "orders.eu-1", "-a", "é", strings.Repeat("a", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidName(s), NameRE.MatchString(s); got != want {
			t.Fatalf("ValidName(%q) = %v, NameRE says %v", s, got, want)
		}
	})
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
