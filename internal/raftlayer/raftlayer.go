// Package raftlayer carries hashicorp/raft's traffic over mutual TLS: a
// raft.StreamLayer whose listener accepts only peers that present a node
// certificate signed by the cluster's CA, and whose dialer presents this
// node's certificate and verifies the peer's against the same CA, the
// address dialled and the node that address belongs to. A node
// certificate carries the URI SAN raftq://node/<id> (package nodeid) and
// a name in auth.node_names; client and svcd certificates from the same
// CA carry no node URI, so they can neither send Raft messages (votes,
// entries, TimeoutNow, snapshots) nor receive them.
//
// Accepting, the peer's node certificate must name a member of the Raft
// configuration (Config.Member): a certificate issued for a node that is
// not (or no longer) in the cluster cannot speak. Which member a message
// claims to come from is inside Raft's stream, which hashicorp/raft's
// transport reads without a hook, so it is not tied to the certificate.
// Dialling, the layer knows whom it meant to reach (Config.PeerID, from
// the Raft configuration), so a node certificate for another id at that
// address is refused.
//
// Refusals are counted (Refused) and logged at most once per
// RefusalLogInterval with the number left out, so a peer hammering the
// port cannot flood the log.
//
// Certificates come from a tlsutil.Source, re-read at every handshake, so
// rotating them on disk needs no restart. Use it with
// raft.NewNetworkTransportWithConfig. Listen binds a port of the layer's
// own; New runs on a listener and dialer given to it, such as one Raft
// group's share of a port several groups use (package raftmux).
package raftlayer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/internal/nodeid"
	"github.com/raftq/raftq/internal/tlsutil"
)

// ALPN is the application protocol both ends name, so a Raft connection
// is never mistaken for another TLS protocol on the same certificates.
const ALPN = "raftq-raft/1"

// HandshakeTimeout bounds an incoming TLS handshake: a peer that connects
// and stays silent is dropped instead of holding a connection forever.
const HandshakeTimeout = 10 * time.Second

// RefusalLogInterval is the least time between two refusal log lines;
// refusals in between are counted and reported with the next line.
const RefusalLogInterval = 10 * time.Second

// Config is what a Layer checks peers with.
type Config struct {
	// TLS is this node's material: its certificate (a node certificate)
	// and the CA peers are verified against. Required.
	TLS *tlsutil.Source
	// LocalID, when set, is this node's Raft server id: Listen refuses to
	// start with a certificate for another node.
	LocalID string
	// NodeNames are path.Match patterns (auth.node_names); a peer's
	// certificate common name or node URI must match one. Empty: any node
	// certificate of the CA.
	NodeNames []string
	// PeerID, when set, names the node expected at an address (from the
	// Raft configuration); a dialled peer must hold that node's
	// certificate. Unknown addresses (ok false) accept any node.
	PeerID func(raft.ServerAddress) (id raft.ServerID, ok bool)
	// Member, when set, says whether an accepted peer's node id may speak
	// Raft to this node: a member of its Raft configuration (a fresh node
	// with no configuration yet accepts any node: the leader adding it).
	// A node certificate that names no member is refused.
	Member func(raft.ServerID) bool
	// Logger receives refusals (default slog.Default()).
	Logger *slog.Logger
	// LogInterval is the least time between two refusal log lines
	// (default RefusalLogInterval).
	LogInterval time.Duration
}

// Layer is a raft.StreamLayer over mutual TLS.
type Layer struct {
	ln       net.Listener
	adv      net.Addr
	dial     func(address string, timeout time.Duration) (net.Conn, error)
	cfg      Config
	log      *slog.Logger
	server   *tls.Config
	refused  atomic.Uint64
	closeMu  sync.Once
	closeErr error

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed uint64
}

// PeerError is a handshake refused because the other side's certificate,
// though signed by the CA, is not the node certificate expected.
type PeerError struct{ Err error }

func (e *PeerError) Error() string { return "raftlayer: " + e.Err.Error() }
func (e *PeerError) Unwrap() error { return e.Err }

// Listen binds addr for Raft traffic. advertise, when set, is the address
// peers dial (host:port); otherwise the bound address, which must then be
// a specific IP (peers cannot dial 0.0.0.0). cfg.TLS must hold a node
// certificate (for cfg.LocalID when set).
func Listen(addr, advertise string, cfg Config) (*Layer, error) {
	// The certificate is checked before binding, so a node with the wrong
	// one fails without having held the port.
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("raftlayer: advertise %q: %w", advertise, err)
		}
		adv = a
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l, err := New(ln, adv, nil, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return l, nil
}

// New is a Layer on a listener and dialer the caller provides instead of
// its own port: a listener shared with other Raft groups (package
// raftmux), whose connections arrive here after the shared port has
// routed them, and a dial function that reaches the matching listener on
// the peer (raftmux.Dialer). The TLS handshake runs over what dial
// returns, so whatever dial writes first (a routing header) goes before
// it in the clear; authentication is this layer's alone, with every check
// Listen's layer makes.
//
// advertise, when set, is the address peers dial; otherwise ln.Addr(),
// which must then be a specific IP. dial nil dials plain TCP. The Layer
// owns ln once New succeeds (Close closes it); on error ln is left to the
// caller.
func New(ln net.Listener, advertise net.Addr, dial func(address string, timeout time.Duration) (net.Conn, error), cfg Config) (*Layer, error) {
	if ln == nil {
		return nil, errors.New("raftlayer: no listener")
	}
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	if dial == nil {
		dial = func(address string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", address, timeout)
		}
	}
	l := &Layer{ln: ln, adv: advertise, dial: dial, cfg: cfg, log: cfg.Logger}
	l.server = l.serverConfig(cfg.TLS.ServerConfig(tls.RequireAndVerifyClientCert, ALPN))
	addrT, ok := l.Addr().(*net.TCPAddr)
	if !ok || addrT.IP == nil || addrT.IP.IsUnspecified() {
		return nil, fmt.Errorf("raftlayer: local bind address %s is not advertisable: set an advertise address", l.Addr())
	}
	return l, nil
}

// checkConfig refuses a configuration without this node's own node
// certificate and fills in the defaults.
func checkConfig(cfg *Config) error {
	src := cfg.TLS
	if src == nil || src.Certificate() == nil {
		return errors.New("raftlayer: TLS for Raft needs this node's certificate and key")
	}
	if cert := src.Certificate(); cert.Leaf != nil {
		if _, err := nodeid.Check(cert.Leaf, cfg.NodeNames, cfg.LocalID); err != nil {
			return fmt.Errorf("raftlayer: this node's own certificate %s: %w", src.Files().Cert, err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = RefusalLogInterval
	}
	cfg.NodeNames = slices.Clone(cfg.NodeNames)
	return nil
}

// serverConfig adds the node check to base: the handshake of a peer
// whose verified certificate is not a node's fails with a TLS alert.
func (l *Layer) serverConfig(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := base.GetConfigForClient(hello)
		if err != nil || c == nil {
			return c, err
		}
		c.VerifyConnection = l.verify("")
		return c, nil
	}
	return cfg
}

// verify is a tls.Config.VerifyConnection that accepts only a node
// certificate (for node want, when set). It runs after the chain has
// been verified against the CA.
func (l *Layer) verify(want raft.ServerID) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		id, err := nodeid.Check(tlsutil.PeerCertificate(cs), l.cfg.NodeNames, string(want))
		if err != nil {
			return &PeerError{Err: err}
		}
		if want == "" && l.cfg.Member != nil && !l.cfg.Member(raft.ServerID(id)) {
			return &PeerError{Err: fmt.Errorf("node %s is not a member of this node's Raft configuration", id)}
		}
		return nil
	}
}

// Accept waits for the next connection. The TLS handshake happens on the
// connection's first read or write (in Raft's per-connection goroutine),
// so a slow or hostile peer never holds up the accept loop; a peer whose
// certificate does not verify gets its connection closed and is counted in
// Refused.
func (l *Layer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, l.server), l: l}, nil
}

// Close stops listening.
func (l *Layer) Close() error {
	l.closeMu.Do(func() { l.closeErr = l.ln.Close() })
	return l.closeErr
}

// Addr is the address peers dial: the advertised one, else the bound one.
func (l *Layer) Addr() net.Addr {
	if l.adv != nil {
		return l.adv
	}
	return l.ln.Addr()
}

// Dial connects to a peer (through the dial function given to New, if
// any) and completes the TLS handshake within timeout: this node's
// certificate is presented and the peer's must be signed by the CA, valid
// for the host in address, and a node certificate — for the node the
// Raft configuration places at address, when it names one.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("raftlayer: peer address %q: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var want raft.ServerID
	if l.cfg.PeerID != nil {
		want, _ = l.cfg.PeerID(address)
	}
	cfg := l.cfg.TLS.ClientConfig(host, ALPN)
	cfg.VerifyConnection = l.verify(want)
	raw, err := l.dial(string(address), timeout)
	if err != nil {
		return nil, err
	}
	// One timeout for both: what is left of it bounds the handshake.
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		var re *tls.CertificateVerificationError
		var pe *PeerError
		if errors.As(err, &re) || errors.As(err, &pe) {
			l.refusal("raft: refused peer certificate", "peer", address, "expected_node", want, "err", err)
		}
		return nil, err
	}
	return c, nil
}

// refusal counts a refused handshake and logs it, at most once per
// Config.LogInterval: the line says how many were left out since the
// last one.
func (l *Layer) refusal(msg string, args ...any) {
	l.refused.Add(1)
	now := time.Now()
	l.logMu.Lock()
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < l.cfg.LogInterval {
		l.suppressed++
		l.logMu.Unlock()
		return
	}
	left := l.suppressed
	l.lastLog, l.suppressed = now, 0
	l.logMu.Unlock()
	l.log.Warn(msg, append(args, "refused_total", l.refused.Load(), "not_logged_since_last", left)...)
}

// Refused counts the handshakes this layer turned down because the other
// side had no acceptable certificate, in either direction.
func (l *Layer) Refused() uint64 { return l.refused.Load() }

// serverConn completes the server handshake on first use, with a bound on
// how long it may take.
type serverConn struct {
	*tls.Conn
	l    *Layer
	once sync.Once
	err  error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
		defer cancel()
		if c.err = c.Conn.HandshakeContext(ctx); c.err != nil {
			c.l.refusal("raft: refused incoming connection", "peer", c.RemoteAddr(), "err", c.err)
			_ = c.Conn.Close()
		}
	})
	return c.err
}

// Read reports a refused handshake as io.EOF: hashicorp/raft logs every
// other read error at ERROR, one line per attempt, and the refusal has
// been counted and logged (rate-limited) already.
func (c *serverConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

func (c *serverConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
