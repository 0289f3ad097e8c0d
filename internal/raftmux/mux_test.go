package raftmux_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/raftmux"
	"github.com/raftq/raftq/internal/testutil"
)

// echo serves ln: every connection gets back what it sends.
func echo(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
}

// roundTrip sends msg on c and wants it back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

func dialEcho(t *testing.T, m *raftmux.Mux, g uint32, msg string) {
	t.Helper()
	c, err := raftmux.Dial(m.Addr().String(), g, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, msg)
}

// closedByMux waits for the mux to close c without sending anything.
func closedByMux(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil {
		t.Fatalf("read %d bytes, %v: the connection was not closed", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the mux did not close the connection")
	}
}

func rawDial(t *testing.T, m *raftmux.Mux, send []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if len(send) > 0 {
		if _, err := c.Write(send); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func header(magic string, version byte, g uint32) []byte {
	return append([]byte(magic), version, byte(g>>24), byte(g>>16), byte(g>>8), byte(g))
}

// TestBadHeadersRefused: a wrong magic, an unknown version, a group
// with no listener, a header cut short and silence past the header
// timeout each get the connection closed and counted; the log has one
// line for them all (the interval is an hour); a connection closed
// before sending a byte (a port probe) is not counted; good connections
// are served all along.
func TestBadHeadersRefused(t *testing.T) {
	logs := &testutil.Buffer{}
	m, err := raftmux.ListenWith("127.0.0.1:0", slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		200*time.Millisecond, 16, 16, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ln, err := m.Listener(7)
	if err != nil {
		t.Fatal(err)
	}
	echo(ln)
	dialEcho(t, m, 7, "before")

	bad := []struct {
		name string
		send []byte
	}{
		{"wrong magic", header("RQMY", raftmux.Version, 7)},
		{"another protocol", []byte("GET / HTTP/1.1\r\n\r\n")},
		{"unknown version", header(raftmux.Magic, raftmux.Version+1, 7)},
		{"unknown group", header(raftmux.Magic, raftmux.Version, 8)},
		{"silence", nil},
		{"half a header, then silence", header(raftmux.Magic, raftmux.Version, 7)[:5]},
	}
	for i, b := range bad {
		c := rawDial(t, m, b.send)
		closedByMux(t, c)
		testutil.WaitFor(t, 10*time.Second, b.name+" counted", func() bool { return m.Refused() >= uint64(i+1) })
		if n := m.Refused(); n != uint64(i+1) {
			t.Fatalf("%s: %d refusals, want %d", b.name, n, i+1)
		}
		dialEcho(t, m, 7, "after "+b.name)
	}
	// A half header closed by the peer: refused too.
	c := rawDial(t, m, []byte("RQ"))
	c.(*net.TCPConn).CloseWrite()
	closedByMux(t, c)
	testutil.WaitFor(t, 10*time.Second, "a short header counted", func() bool { return m.Refused() == uint64(len(bad)+1) })

	// A probe: connects, closes. Logged at debug, not counted.
	rawDial(t, m, nil).Close()
	testutil.WaitFor(t, 10*time.Second, "the probe seen", func() bool { return strings.Contains(logs.String(), "closed before its header") })
	if n := m.Refused(); n != uint64(len(bad)+1) {
		t.Fatalf("%d refusals after a port probe, want %d", n, len(bad)+1)
	}
	if n := strings.Count(logs.String(), "refused connection"); n != 1 {
		t.Fatalf("%d refusal log lines within the interval, want 1:\n%s", n, logs.String())
	}
}

// TestSilentPeerHoldsUpNobody: while a peer sits connected without a
// header, other connections are routed and served, and the silent one
// may still send its header within the timeout and be served.
func TestSilentPeerHoldsUpNobody(t *testing.T) {
	m, err := raftmux.Listen("127.0.0.1:0", "", testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, g := range []uint32{1, 2} {
		ln, err := m.Listener(g)
		if err != nil {
			t.Fatal(err)
		}
		echo(ln)
	}
	slow := rawDial(t, m, nil)
	for range 3 {
		dialEcho(t, m, 1, "one")
		dialEcho(t, m, 2, "two")
	}
	if _, err := slow.Write(header(raftmux.Magic, raftmux.Version, 2)); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, slow, "late but in time")
	if n := m.Refused(); n != 0 {
		t.Fatalf("%d refusals, want none", n)
	}
}

// TestFullPendingSetDelays: with one pending slot taken by a silent
// peer, a good connection waits for the slot (the silent peer's
// timeout) and is then served, not refused.
func TestFullPendingSetDelays(t *testing.T) {
	m, err := raftmux.ListenWith("127.0.0.1:0", testutil.Logger(t), 300*time.Millisecond, 1, 16, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ln, err := m.Listener(1)
	if err != nil {
		t.Fatal(err)
	}
	echo(ln)
	silent := rawDial(t, m, nil)
	dialEcho(t, m, 1, "served after the silent peer's slot came free")
	// The slot came free only once the silent peer was refused.
	if n := m.Refused(); n != 1 {
		t.Fatalf("%d refusals when the good connection was served, want 1 (the silent peer)", n)
	}
	closedByMux(t, silent)
}

// TestHeaderConsumedAndBacklog: Accept yields the connection with the
// header consumed (the first byte read is the first the dialer wrote
// after it); a group that does not Accept holds at most its backlog, and
// the next connection for it is refused while other groups go on.
func TestHeaderConsumedAndBacklog(t *testing.T) {
	m, err := raftmux.ListenWith("127.0.0.1:0", testutil.Logger(t), 5*time.Second, 16, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	stuck, err := m.Listener(1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.Listener(2)
	if err != nil {
		t.Fatal(err)
	}
	echo(other)
	// Two connections for group 1, each with its payload: the backlog
	// (1) takes whichever the mux routes first and the other is refused.
	conns := map[string]net.Conn{}
	for _, p := range []string{"payload A", "payload B"} {
		c, err := raftmux.Dial(m.Addr().String(), 1, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
		conns[p] = c
	}
	testutil.WaitFor(t, 10*time.Second, "one connection refused", func() bool { return m.Refused() >= 1 })
	dialEcho(t, m, 2, "the other group goes on")
	if n := m.Refused(); n != 1 {
		t.Fatalf("%d refusals, want 1 (group 1's backlog is full)", n)
	}

	c, err := stuck.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make([]byte, len("payload A"))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || conns[string(got)] == nil {
		t.Fatalf("first bytes after the header: %q, %v", got, err)
	}
	delete(conns, string(got))
	for _, refused := range conns {
		closedByMux(t, refused)
	}
}

// TestCloseUnblocksEveryGroup: Close makes Accept return net.ErrClosed
// (what a closed TCP listener returns, which hashicorp/raft's transport
// stops on) on every group's listener, closes connections whose header
// is pending, and refuses new listeners and connections.
func TestCloseUnblocksEveryGroup(t *testing.T) {
	m, err := raftmux.Listen("127.0.0.1:0", "", testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	for _, g := range []uint32{0, 1, 1 << 31} {
		ln, err := m.Listener(g)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if c != nil {
				c.Close()
			}
			errs <- err
		}()
	}
	s, err := m.StreamLayer(5)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, err := s.Accept(); errs <- err }()
	pending := rawDial(t, m, header(raftmux.Magic, raftmux.Version, 1)[:3])
	time.Sleep(50 * time.Millisecond) // most likely the Accepts block now; if not, they must fail at once
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close left an Accept blocked")
		}
	}
	closedByMux(t, pending)
	if _, err := m.Listener(9); err == nil {
		t.Fatal("a listener from a closed mux")
	}
	if c, err := raftmux.Dial(m.Addr().String(), 1, time.Second); err == nil {
		closedByMux(t, c)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestGroupListenerLifecycle: one listener per group at a time; closing
// a group's listener ends its Accept, refuses its connections and leaves
// the other groups served; the group may then listen again.
func TestGroupListenerLifecycle(t *testing.T) {
	m, err := raftmux.Listen("127.0.0.1:0", "", testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := m.Listener(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Listener(1); err == nil {
		t.Fatal("a second listener for group 1")
	}
	if _, err := m.StreamLayer(1); err == nil {
		t.Fatal("a stream layer for group 1, which has a listener")
	}
	b, err := m.Listener(2)
	if err != nil {
		t.Fatal(err)
	}
	echo(b)
	if a.Addr().String() != m.Addr().String() || b.Addr().String() != m.Addr().String() {
		t.Fatalf("group addresses %s, %s, want the mux's %s", a.Addr(), b.Addr(), m.Addr())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed group listener: %v", err)
	}
	c, err := raftmux.Dial(m.Addr().String(), 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	closedByMux(t, c)
	c.Close()
	testutil.WaitFor(t, 10*time.Second, "the closed group's connection counted", func() bool { return m.Refused() == 1 })
	dialEcho(t, m, 2, "group 2 goes on")

	again, err := m.Listener(1)
	if err != nil {
		t.Fatalf("group 1 listening again: %v", err)
	}
	echo(again)
	dialEcho(t, m, 1, "group 1 is back")
}

func TestListenNeedsAdvertisableAddress(t *testing.T) {
	if m, err := raftmux.Listen("0.0.0.0:0", "", nil); err == nil {
		m.Close()
		t.Fatal("a wildcard bind without an advertise address was accepted")
	}
	m, err := raftmux.Listen("0.0.0.0:0", "127.0.0.1:7000", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Addr().String() != "127.0.0.1:7000" {
		t.Fatalf("Addr %s, want the advertised 127.0.0.1:7000", m.Addr())
	}
	s, err := m.StreamLayer(1)
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr().String() != "127.0.0.1:7000" {
		t.Fatalf("stream layer Addr %s, want the advertised 127.0.0.1:7000", s.Addr())
	}
	if _, err := raftmux.Listen("127.0.0.1:0", "no-port", nil); err == nil {
		t.Fatal("an advertise address without a port was accepted")
	}
}
