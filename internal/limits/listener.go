package limits

import (
	"net"
	"sync"
)

// Listener caps the connections a listener holds open: in all, and per
// remote IP. A connection over a cap is closed as soon as it is accepted
// (before any TLS or HTTP/2 bytes: it costs no handshake) and reported to
// OnRefuse; the client sees its connection closed and retries later, like
// any connection failure. netutil.LimitListener instead stops accepting,
// which leaves excess clients hanging in the kernel's backlog and lets one
// address take every slot.
type Listener struct {
	net.Listener
	total, perIP *Cap
	// OnRefuse, when set, is told of each refused connection (log it,
	// rate limited: a flood calls it for every connection).
	OnRefuse func(remote net.Addr, err error)
}

// LimitListener wraps l; total and perIP may be nil (no limit).
func LimitListener(l net.Listener, total, perIP *Cap, onRefuse func(net.Addr, error)) *Listener {
	return &Listener{Listener: l, total: total, perIP: perIP, OnRefuse: onRefuse}
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, err := AcquireAll(Slot{Cap: l.total}, Slot{Cap: l.perIP, Key: remoteIP(c.RemoteAddr())})
		if err != nil {
			_ = c.Close()
			if l.OnRefuse != nil {
				l.OnRefuse(c.RemoteAddr(), err)
			}
			continue
		}
		return &countedConn{Conn: c, release: release}, nil
	}
}

// InFlight is the number of connections held open (tests).
func (l *Listener) InFlight() int { return l.total.InFlight() }

func remoteIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// countedConn gives its slots back when closed.
type countedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
