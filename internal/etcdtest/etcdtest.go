// Package etcdtest runs a real etcd server inside the test process (etcd's
// own server code, go.etcd.io/etcd/server/v3/embed) on free loopback ports
// in a temporary directory, so tests of discovery, bootstrap and live
// configuration need nothing installed. The server can be stopped and
// started again on the same ports and data, to test what happens while
// etcd is down.
package etcdtest

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/raftq/raftq/internal/freeport"
)

// Server is one single-member etcd cluster.
type Server struct {
	t         testing.TB
	dir       string
	clientURL url.URL
	peerURL   url.URL

	mu sync.Mutex
	e  *embed.Etcd

	// tls, when set, is the server's client-side TLS: https, and client
	// certificates from its CA required.
	tls *TLSFiles
}

// TLSFiles are the PEM files of a TLS etcd: its certificate and key, and
// the CA its clients' certificates must come from (and that signed its
// own).
type TLSFiles struct{ CA, Cert, Key string }

// NewTLS starts a server that serves clients over TLS only and requires
// client certificates from f.CA (mutual TLS), and stops it at the end of
// the test.
func NewTLS(t testing.TB, f TLSFiles) *Server {
	t.Helper()
	s := &Server{
		t:         t,
		dir:       t.TempDir(),
		clientURL: url.URL{Scheme: "https", Host: freeport.T(t)},
		peerURL:   url.URL{Scheme: "http", Host: freeport.T(t)},
		tls:       &f,
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// New starts a server and stops it at the end of the test.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:         t,
		dir:       t.TempDir(),
		clientURL: url.URL{Scheme: "http", Host: freeport.T(t)},
		peerURL:   url.URL{Scheme: "http", Host: freeport.T(t)},
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server (again, after Stop) on the same ports and data
// directory; it returns once the server serves clients.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		return
	}
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if s.tls != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: s.tls.Cert, KeyFile: s.tls.Key, TrustedCAFile: s.tls.CA, ClientCertAuth: true}
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Fast and small: a test server never needs big batches or metrics.
	cfg.SnapshotCount = 10000
	var err error
	var e *embed.Etcd
	// A port just released by Stop may be held by the OS for a moment.
	for i := 0; i < 50; i++ {
		e, err = embed.StartEtcd(cfg)
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("etcdtest: start: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		s.t.Fatalf("etcdtest: server failed: %v", err)
	case <-time.After(60 * time.Second):
		e.Close()
		s.t.Fatalf("etcdtest: server not ready within 60s")
	}
	s.e = e
}

// Stop shuts the server down cleanly; data stays for Start. Clients see
// their calls fail (or hang until their deadline) until Start.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Endpoint is the client URL, e.g. "http://127.0.0.1:40123".
func (s *Server) Endpoint() string { return s.clientURL.String() }

// Endpoints is Endpoint as a list, for clientv3.Config and brokerd.Config.
func (s *Server) Endpoints() []string { return []string{s.Endpoint()} }

// Client returns a client of this server, closed at the end of the test
// (of a TLS server: presenting the server's own certificate, which must
// allow client use).
func (s *Server) Client() *clientv3.Client {
	s.t.Helper()
	cfg := clientv3.Config{
		Endpoints:   s.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if s.tls != nil {
		tc, err := (transport.TLSInfo{CertFile: s.tls.Cert, KeyFile: s.tls.Key, TrustedCAFile: s.tls.CA}).ClientConfig()
		if err != nil {
			s.t.Fatalf("etcdtest: client TLS: %v", err)
		}
		cfg.TLS = tc
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		s.t.Fatalf("etcdtest: client: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Prefix returns a key prefix unique within this server, so tests that
// share one server never see each other's keys.
func (s *Server) Prefix(name string) string {
	prefixMu.Lock()
	prefixN++
	n := prefixN
	prefixMu.Unlock()
	return fmt.Sprintf("test/%s-%d", name, n)
}

var (
	prefixMu sync.Mutex
	prefixN  int
)

// WaitKey waits until key exists (true) or does not (false), failing the
// test after timeout.
func (s *Server) WaitKey(c *clientv3.Client, key string, exists bool, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := c.Get(ctx, key, clientv3.WithCountOnly())
		cancel()
		if err == nil && (r.Count > 0) == exists {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("etcdtest: key %s exists=%v not reached within %s", key, exists, timeout)
}
