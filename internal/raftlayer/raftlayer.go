// Package raftlayer carries hashicorp/raft's traffic over mutual TLS: a
// raft.StreamLayer whose listener accepts only peers that present a
// certificate signed by the cluster's CA, and whose dialer presents this
// node's certificate and verifies the peer's against the same CA and the
// address dialled. A node without the cluster's certificate can neither
// send Raft messages (votes, entries, snapshots) nor receive them.
//
// Certificates come from a tlsutil.Source, re-read at every handshake, so
// rotating them on disk needs no restart. Use it with
// raft.NewNetworkTransportWithConfig.
package raftlayer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/internal/tlsutil"
)

// ALPN is the application protocol both ends name, so a Raft connection
// is never mistaken for another TLS protocol on the same certificates.
const ALPN = "raftq-raft/1"

// HandshakeTimeout bounds an incoming TLS handshake: a peer that connects
// and stays silent is dropped instead of holding a connection forever.
const HandshakeTimeout = 10 * time.Second

// Layer is a raft.StreamLayer over mutual TLS.
type Layer struct {
	ln       net.Listener
	adv      net.Addr
	src      *tlsutil.Source
	log      *slog.Logger
	server   *tls.Config
	refused  atomic.Uint64
	closeMu  sync.Once
	closeErr error
}

// Listen binds addr for Raft traffic. advertise, when set, is the address
// peers dial (host:port); otherwise the bound address, which must then be
// a specific IP (peers cannot dial 0.0.0.0). src must hold a certificate.
func Listen(addr, advertise string, src *tlsutil.Source, logger *slog.Logger) (*Layer, error) {
	if src == nil || src.Certificate() == nil {
		return nil, errors.New("raftlayer: TLS for Raft needs this node's certificate and key")
	}
	if logger == nil {
		logger = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Layer{ln: ln, src: src, log: logger,
		server: src.ServerConfig(tls.RequireAndVerifyClientCert, ALPN)}
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("raftlayer: advertise %q: %w", advertise, err)
		}
		l.adv = a
	}
	addrT, ok := l.Addr().(*net.TCPAddr)
	if !ok || addrT.IP == nil || addrT.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raftlayer: local bind address %s is not advertisable: set an advertise address", l.Addr())
	}
	return l, nil
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

// Dial connects to a peer and completes the TLS handshake within timeout:
// this node's certificate is presented and the peer's must be signed by
// the CA and valid for the host in address.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("raftlayer: peer address %q: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: l.src.ClientConfig(host, ALPN)}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		var re *tls.CertificateVerificationError
		if errors.As(err, &re) {
			l.refused.Add(1)
			l.log.Warn("raft: refused peer certificate", "peer", address, "err", err)
		}
		return nil, err
	}
	return c, nil
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
			c.l.refused.Add(1)
			c.l.log.Warn("raft: refused incoming connection", "peer", c.RemoteAddr(), "err", c.err)
			_ = c.Conn.Close()
		}
	})
	return c.err
}

func (c *serverConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *serverConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
