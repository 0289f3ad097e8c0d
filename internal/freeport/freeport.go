// Package freeport hands out loopback TCP ports for tests and the jepsen
// harness that must bind the same port again after a restart.
//
// Asking the kernel for port 0 returns a port from the ephemeral range, the
// same range the kernel draws from for every outgoing connection. A node
// that is down for a moment during a restart test leaves its port free, and
// any outgoing connection on the machine (another test package's client,
// a Raft dial) may take it as its local port; the node then cannot come back
// ("bind: address already in use"), which once failed CI. Ports below the
// ephemeral range are never given to outgoing connections, so only another
// explicit bind can take them; drawing at random from ~17,000 of them and
// never handing one out twice in a process makes that unlikely too.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// low is the first port handed out: above the ports daemons are usually
// configured on (make run uses 7101-7103, 7379 and 8xxx).
const low = 15000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// ephemeralLow returns the first port of the kernel's ephemeral range
// (Linux's default 32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > low+1000 {
				return n
			}
		}
	}
	return 32768
}

// Port returns a loopback port below the ephemeral range that was free a
// moment ago and that this process has not handed out before.
func Port() (int, error) {
	high := ephemeralLow()
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < 200; i++ {
		p := low + rand.IntN(high-low)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		return p, nil
	}
	// The low range is crowded: fall back to the kernel's choice.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	given[p] = true
	return p, nil
}

// Addr is Port as "127.0.0.1:port".
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// T is Addr for tests and test fixtures: it fails tb when no port can be
// had.
func T(tb testing.TB) string {
	tb.Helper()
	a, err := Addr()
	if err != nil {
		tb.Fatal(err)
	}
	return a
}
