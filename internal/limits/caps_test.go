package limits

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAcquireAllIsAllOrNothing: when a later cap is full, the slots
// taken before it are given back, and the refusal names that cap's key.
func TestAcquireAllIsAllOrNothing(t *testing.T) {
	node := NewCap(10, "things on this node", "limits.max_things")
	per := NewCap(1, "things per principal", "limits.max_things_per_principal")
	r, err := AcquireAll(Slot{Cap: node}, Slot{Cap: per, Key: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireAll(Slot{Cap: node}, Slot{Cap: per, Key: "alice"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "limits.max_things_per_principal") {
		t.Fatalf("alice's second: %v", err)
	}
	if node.InFlight() != 1 {
		t.Fatalf("the refused call kept its node slot: %d held", node.InFlight())
	}
	if _, err := AcquireAll(Slot{Cap: node}, Slot{Cap: per, Key: "bob"}); err != nil {
		t.Fatalf("bob: %v", err)
	}
	r()
	r()
	if node.InFlight() != 1 || per.InFlight() != 1 {
		t.Fatalf("after alice's release: %d node, %d principal slots held, want 1 and 1", node.InFlight(), per.InFlight())
	}
	if _, err := AcquireAll(Slot{}, Slot{Cap: NewCap(0, "x", "y")}); err != nil {
		t.Fatalf("no caps: %v", err)
	}
}

// TestLimitListener: over a real TCP listener, connections beyond the
// node's cap are closed at once (the client reads EOF) and reported with
// the cap's key; closing a held connection frees its slot.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 10)
	l := LimitListener(raw, NewCap(2, "connections on this node", "limits.max_conns"), NewCap(5, "connections per remote IP", "limits.max_conns_per_ip"),
		func(_ net.Addr, err error) { refused <- err })
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	s1, _ := <-accepted, <-accepted
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang, not a timing assertion
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("the third connection was not closed: %v", err)
	}
	if err := <-refused; !strings.Contains(err.Error(), "limits.max_conns") {
		t.Fatalf("refusal: %v", err)
	}
	if l.InFlight() != 2 {
		t.Fatalf("%d connections held, want 2", l.InFlight())
	}
	s1.Close()
	dial()
	<-accepted
	if l.InFlight() != 2 {
		t.Fatalf("after one closed and one more came: %d held, want 2", l.InFlight())
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
