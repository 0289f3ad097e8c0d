// Package raftmux shares one TCP listener among several Raft groups in
// one process. A node that runs many hashicorp/raft instances (one per
// group) would otherwise need one port per group: every group added would
// mean another port to open in firewalls, to declare in a Kubernetes
// Service and pod spec, to advertise and to keep from colliding. With a
// mux a node has one Raft port whatever the number of groups.
//
// hashicorp/raft's NetworkTransport takes a raft.StreamLayer (a
// net.Listener and a Dial) per instance and owns the connections it gets
// from it, so the mux hands each group a listener of its own: the peer
// that dials writes a short header naming the group before anything else
// (Dial), and the accepting mux reads it and passes the rest of the
// connection to that group's listener (Listener, StreamLayer). Each
// connection carries one group's traffic, as with a port per group; no
// framing is added after the header.
//
// The header is only a routing hint, sent in the clear: authentication is
// not the mux's job. With TLS, each group's listener and dialer are
// wrapped in a raftlayer.Layer (raftlayer.New with Dialer), which
// runs its mutual TLS handshake after the header, with every check it
// makes on a port of its own.
//
// The header is magic "RQMX", a version byte (1) and the group id as a
// 4-byte big-endian integer. A connection that sends a wrong magic, an
// unknown version, a group with no listener, or no full header within
// HeaderTimeout is closed and counted (Refused), and logged at most once
// per RefusalLogInterval with the number left out, as raftlayer does for
// refused certificates. Headers are read in a goroutine per connection,
// at most MaxPendingHeaders at once, so a silent peer holds up neither
// the accept loop nor other connections. A connection closed before
// sending a byte (a load balancer's or Kubernetes' TCP probe) is not a
// refusal. The mux sends nothing back: a refused dialer sees its
// connection closed, as by a port with nothing behind it, and Raft
// retries.
//
// Wiring: one Mux per process; per group, StreamLayer(g) (plaintext) or
// raftlayer.New(Listener(g), nil, Dialer(g), cfg) (mutual TLS) into
// raft.NewNetworkTransportWithConfig. Closing a group's transport closes
// its listener: the group's connections are then refused while the other
// groups go on, and the group may take a listener again (a restart). Stop
// the transports before Mux.Close: a transport whose listener is closed
// under it logs every failed Accept until its own Close.
package raftmux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Magic opens every connection's header; Version follows it.
const (
	Magic   = "RQMX"
	Version = 1
	// HeaderLen is the header's size: magic, version, group.
	HeaderLen = len(Magic) + 1 + 4
)

// HeaderTimeout bounds how long an accepted connection may take to send
// its header: a peer that connects and stays silent is dropped instead
// of holding a goroutine forever.
const HeaderTimeout = 5 * time.Second

// MaxPendingHeaders bounds the connections whose header is being read at
// once. When that many peers are connected and silent, the accept loop
// waits for one to send its header or time out (HeaderTimeout), leaving
// new connections in the kernel's backlog: memory stays bounded, and a
// connection that would have been served is delayed, not refused.
const MaxPendingHeaders = 256

// Backlog is how many routed connections may wait for one group's Accept.
// Raft accepts at once, so a full backlog means the group is stuck; its
// further connections are refused rather than held, so one stuck group
// cannot use up the pending slots every group shares.
const Backlog = 64

// RefusalLogInterval is the least time between two refusal log lines;
// refusals in between are counted and reported with the next line.
const RefusalLogInterval = 10 * time.Second

// options are the limits, which tests shorten.
type options struct {
	headerTimeout time.Duration
	maxPending    int
	backlog       int
	logInterval   time.Duration
}

var defaults = options{headerTimeout: HeaderTimeout, maxPending: MaxPendingHeaders, backlog: Backlog, logInterval: RefusalLogInterval}

// Mux is one TCP listener whose connections are routed to Raft groups by
// their header.
type Mux struct {
	ln   net.Listener
	adv  net.Addr
	log  *slog.Logger
	opts options
	sem  chan struct{} // a slot per connection whose header is being read

	mu      sync.Mutex
	groups  map[uint32]*groupListener
	pending map[net.Conn]struct{} // connections whose header is being read, closed by Close
	closed  bool

	done      chan struct{}
	wg        sync.WaitGroup // the accept loop and the header readers
	closeOnce sync.Once
	closeErr  error

	refused    atomic.Uint64
	logMu      sync.Mutex
	lastLog    time.Time
	suppressed uint64
}

// Listen binds addr for the Raft traffic of every group of this process.
// advertise, when set, is the address peers dial (host:port); otherwise
// the bound address, which must then be a specific IP (peers cannot dial
// 0.0.0.0). logger receives refusals (nil: slog.Default()).
func Listen(addr, advertise string, logger *slog.Logger) (*Mux, error) {
	return listen(addr, advertise, logger, defaults)
}

func listen(addr, advertise string, logger *slog.Logger, o options) (*Mux, error) {
	if logger == nil {
		logger = slog.Default()
	}
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("raftmux: advertise %q: %w", advertise, err)
		}
		adv = a
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raftmux: %w", err)
	}
	m := &Mux{
		ln: ln, adv: adv, log: logger, opts: o,
		sem:     make(chan struct{}, o.maxPending),
		groups:  map[uint32]*groupListener{},
		pending: map[net.Conn]struct{}{},
		done:    make(chan struct{}),
	}
	if a, ok := m.Addr().(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raftmux: local bind address %s is not advertisable: set an advertise address", m.Addr())
	}
	m.wg.Add(1)
	go m.serve()
	return m, nil
}

// Addr is the address peers dial: the advertised one, else the bound one.
func (m *Mux) Addr() net.Addr {
	if m.adv != nil {
		return m.adv
	}
	return m.ln.Addr()
}

// Refused counts the connections closed for a bad or missing header, an
// unknown group or a group's full backlog.
func (m *Mux) Refused() uint64 { return m.refused.Load() }

// Close stops listening, closes every group's listener (their Accept
// returns net.ErrClosed) and every connection whose header has not been
// read, and waits for the mux's goroutines. Connections already handed
// to a group belong to it. Close is safe to call more than once.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		close(m.done)
		groups := make([]*groupListener, 0, len(m.groups))
		for _, gl := range m.groups {
			groups = append(groups, gl)
		}
		pending := make([]net.Conn, 0, len(m.pending))
		for c := range m.pending {
			pending = append(pending, c)
		}
		m.mu.Unlock()
		m.closeErr = m.ln.Close()
		for _, gl := range groups {
			gl.Close()
		}
		for _, c := range pending {
			c.Close()
		}
		m.wg.Wait()
	})
	return m.closeErr
}

// Listener returns group g's listener: its Accept yields the connections
// whose header named g, header consumed. A group has one listener at a
// time: asking again while it is open is an error, and once it is closed
// (raft.NetworkTransport.Close closes it) the group's connections are
// refused until Listener is called for g again, so a group can be
// stopped and restarted without the mux.
func (m *Mux) Listener(g uint32) (net.Listener, error) {
	return m.listener(g)
}

func (m *Mux) listener(g uint32) (*groupListener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("raftmux: listener for group %d: %w", g, net.ErrClosed)
	}
	if _, ok := m.groups[g]; ok {
		return nil, fmt.Errorf("raftmux: group %d already has a listener", g)
	}
	gl := &groupListener{m: m, g: g, ch: make(chan net.Conn, m.opts.backlog), done: make(chan struct{})}
	m.groups[g] = gl
	return gl, nil
}

// StreamLayer is a plaintext raft.StreamLayer for group g: Accept from
// Listener(g), Dial selects g on the peer's mux, Addr is the mux's
// address. Use it with raft.NewNetworkTransportWithConfig; closing the
// transport closes the group's listener. For mutual TLS, wrap
// Listener(g) and Dialer(g) in raftlayer.New instead.
func (m *Mux) StreamLayer(g uint32) (raft.StreamLayer, error) {
	gl, err := m.listener(g)
	if err != nil {
		return nil, err
	}
	return streamLayer{gl}, nil
}

// Dial connects to the mux at address and selects group g by writing the
// header, all within timeout (none when timeout <= 0). The connection is
// then group g's, as if the group had a port of its own.
func Dial(address string, g uint32, timeout time.Duration) (net.Conn, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", address)
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteDeadline(deadline)
	if _, err := c.Write(header(g)); err != nil {
		c.Close()
		return nil, fmt.Errorf("raftmux: header to %s: %w", address, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// Dialer is Dial for group g with the signature raftlayer.New takes.
func Dialer(g uint32) func(address string, timeout time.Duration) (net.Conn, error) {
	return func(address string, timeout time.Duration) (net.Conn, error) {
		return Dial(address, g, timeout)
	}
}

func header(g uint32) []byte {
	h := make([]byte, HeaderLen)
	copy(h, Magic)
	h[len(Magic)] = Version
	binary.BigEndian.PutUint32(h[len(Magic)+1:], g)
	return h
}

// serve accepts connections and routes each in a goroutine of its own,
// once a pending slot is free.
func (m *Mux) serve() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		select {
		case m.sem <- struct{}{}:
		case <-m.done:
			return
		}
		c, err := m.ln.Accept()
		if err != nil {
			<-m.sem
			if m.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary failure (out of file descriptors): back off as
			// net/http's server does instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("raftmux: accept failed", "addr", m.ln.Addr(), "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-m.done:
				return
			}
			continue
		}
		delay = 0
		if !m.track(c) {
			c.Close()
			<-m.sem
			return
		}
		go m.route(c)
	}
}

// track records c as pending and counts its goroutine, unless the mux is
// closed (Close may be waiting for the goroutines already).
func (m *Mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.pending[c] = struct{}{}
	m.wg.Add(1)
	return true
}

func (m *Mux) isClosed() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// route reads c's header and hands c to the group it names. It holds
// c's pending slot to the end (handing over never blocks), so a refusal
// is counted before the slot serves another connection.
func (m *Mux) route(c net.Conn) {
	defer m.wg.Done()
	defer func() { <-m.sem }()
	g, err := m.readHeader(c)
	m.mu.Lock()
	delete(m.pending, c)
	m.mu.Unlock()
	if err != nil {
		c.Close()
		switch {
		case m.isClosed():
			// Close closed it: not the peer's doing.
		case errors.Is(err, errNothingSent):
			// Connected and closed without a byte: a port check (a load
			// balancer's or Kubernetes' tcpSocket probe), not a peer
			// speaking wrongly.
			m.log.Debug("raftmux: connection closed before its header", "peer", c.RemoteAddr())
		default:
			m.refusal(c, err)
		}
		return
	}
	m.mu.Lock()
	gl := m.groups[g]
	m.mu.Unlock()
	if gl == nil {
		c.Close()
		m.refusal(c, fmt.Errorf("no group %d here", g))
		return
	}
	if err := gl.deliver(c); err != nil {
		c.Close()
		if !m.isClosed() {
			m.refusal(c, err)
		}
	}
}

var errNothingSent = errors.New("closed before sending anything")

// readHeader reads and checks the header within the header timeout and
// returns the group it names.
func (m *Mux) readHeader(c net.Conn) (uint32, error) {
	_ = c.SetReadDeadline(time.Now().Add(m.opts.headerTimeout))
	h := make([]byte, HeaderLen)
	n, err := io.ReadFull(c, h)
	if err != nil {
		var ne net.Error
		switch {
		case n == 0 && errors.Is(err, io.EOF):
			return 0, errNothingSent
		case errors.As(err, &ne) && ne.Timeout():
			return 0, fmt.Errorf("no header within %s (%d of %d bytes)", m.opts.headerTimeout, n, HeaderLen)
		default:
			return 0, fmt.Errorf("header: %d of %d bytes: %w", n, HeaderLen, err)
		}
	}
	if string(h[:len(Magic)]) != Magic {
		return 0, fmt.Errorf("not a raftmux header (starts %q)", h[:len(Magic)])
	}
	if v := h[len(Magic)]; v != Version {
		return 0, fmt.Errorf("header version %d, this node speaks %d", v, Version)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(h[len(Magic)+1:]), nil
}

// refusal counts a refused connection and logs it, at most once per log
// interval: the line says how many were left out since the last one.
func (m *Mux) refusal(c net.Conn, reason error) {
	m.refused.Add(1)
	now := time.Now()
	m.logMu.Lock()
	if !m.lastLog.IsZero() && now.Sub(m.lastLog) < m.opts.logInterval {
		m.suppressed++
		m.logMu.Unlock()
		return
	}
	left := m.suppressed
	m.lastLog, m.suppressed = now, 0
	m.logMu.Unlock()
	m.log.Warn("raftmux: refused connection", "peer", c.RemoteAddr(), "reason", reason,
		"refused_total", m.refused.Load(), "not_logged_since_last", left)
}

// groupListener is one group's net.Listener on the mux.
type groupListener struct {
	m    *Mux
	g    uint32
	ch   chan net.Conn // routed connections waiting for Accept
	done chan struct{}

	mu     sync.Mutex // orders deliver against Close, so no connection is left in ch
	closed bool
}

// deliver queues c for Accept, or fails if the listener is closed or its
// backlog full.
func (l *groupListener) deliver(c net.Conn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("no group %d here (its listener closed)", l.g)
	}
	select {
	case l.ch <- c:
		return nil
	default:
		return fmt.Errorf("group %d: %d connections waiting for Accept", l.g, cap(l.ch))
	}
}

// Accept waits for the next connection that named this group. Once the
// listener (or the mux) is closed it returns an error wrapping
// net.ErrClosed, as a closed TCP listener does.
func (l *groupListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, l.closedErr()
	default:
	}
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, l.closedErr()
	}
}

func (l *groupListener) closedErr() error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
}

// Close stops the group's listener: Accept returns, connections waiting
// for it are closed, and the group's next connections are refused. The
// mux and the other groups go on. Closing twice does nothing.
func (l *groupListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	l.mu.Unlock()
	l.m.mu.Lock()
	if l.m.groups[l.g] == l {
		delete(l.m.groups, l.g)
	}
	l.m.mu.Unlock()
	for {
		select {
		case c := <-l.ch:
			c.Close()
		default:
			return nil
		}
	}
}

// Addr is the mux's address: the one peers dial for every group.
func (l *groupListener) Addr() net.Addr { return l.m.Addr() }

// streamLayer is a group's listener with a Dial to the same group on
// peers.
type streamLayer struct{ *groupListener }

// Dial connects to the mux at address and selects this group.
func (s streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return Dial(string(address), s.g, timeout)
}
