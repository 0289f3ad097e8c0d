package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Ports come from below the ephemeral range, are bindable, and are never
// handed out twice in one process.
func TestPortsBelowEphemeralRangeAndDistinct(t *testing.T) {
	high := ephemeralLow()
	seen := map[int]bool{}
	for i := 0; i < 300; i++ {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p < low || p >= high {
			t.Fatalf("port %d outside [%d, %d)", p, low, high)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	a, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatalf("cannot bind handed-out %s: %v", a, err)
	}
	l.Close()
}

// A port something already listens on is never handed out.
func TestSkipsBoundPorts(t *testing.T) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	bound := map[int]bool{}
	for p := low; p < low+50; p++ {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			held = append(held, l)
			bound[p] = true
		}
	}
	for i := 0; i < 200; i++ {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if bound[p] {
			t.Fatalf("handed out bound port %d", p)
		}
	}
}
