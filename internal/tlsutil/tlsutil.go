// Package tlsutil loads a node's TLS material (CA, certificate, key) from
// files and keeps it current: every handshake uses what the files hold at
// that moment, so a certificate, key or CA rotated on disk is in force for
// the next connection without a restart (connections already open keep
// the certificate they were made with).
//
// It builds the configurations raftq uses everywhere: servers that may
// require and verify client certificates (mutual TLS), clients that
// verify the server against the CA and present their own certificate,
// and the gRPC credentials of both. TLS 1.2 is the minimum; Go's default
// cipher suites and curves apply.
package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc/credentials"

	"github.com/raftq/raftq/internal/filewatch"
)

// MinVersion is the oldest TLS version any raftq endpoint speaks.
const MinVersion = tls.VersionTLS12

// Files names a party's TLS material.
type Files struct {
	// CA is the PEM bundle of certificate authorities whose certificates
	// are trusted: servers verify clients against it, clients servers.
	CA string
	// Cert and Key are this party's certificate (chain) and private key.
	Cert string
	Key  string
}

// Enabled reports whether any file is named (TLS is meant to be on).
func (f Files) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Validate reports a set of files that cannot work, naming what is
// missing: a certificate without its key or the other way round, or no
// CA to verify the other side with.
func (f Files) Validate() error {
	var errs []error
	if (f.Cert == "") != (f.Key == "") {
		errs = append(errs, errors.New("certificate and key must be given together"))
	}
	if f.CA == "" {
		errs = append(errs, errors.New("a CA file is required to verify the other side"))
	}
	return errors.Join(errs...)
}

// material is one consistent version of the files.
type material struct {
	cert *tls.Certificate // nil without Cert/Key
	pool *x509.CertPool
}

// Source is a party's TLS material, re-read from disk when it changes.
type Source struct {
	files Files
	set   *filewatch.Set[material]
}

// Load reads the files now and returns a Source, or an error naming the
// file that is missing or does not parse (or a key that does not match
// its certificate). Later reload failures keep the previous material in
// force and are logged to logger (default slog.Default()).
func Load(f Files, logger *slog.Logger) (*Source, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	set, err := filewatch.New([]string{f.CA, f.Cert, f.Key}, func(d [][]byte) (material, error) {
		return parse(f, d[0], d[1], d[2])
	})
	if err != nil {
		return nil, err
	}
	set.OnError = func(err error) { logger.Error("tls material", "ca", f.CA, "cert", f.Cert, "err", err) }
	return &Source{files: f, set: set}, nil
}

func parse(f Files, caPEM, certPEM, keyPEM []byte) (material, error) {
	var m material
	m.pool = x509.NewCertPool()
	if !m.pool.AppendCertsFromPEM(caPEM) {
		return m, fmt.Errorf("CA file %s: no PEM certificate in it", f.CA)
	}
	if f.Cert != "" {
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return m, fmt.Errorf("certificate %s with key %s: %w", f.Cert, f.Key, err)
		}
		m.cert = &c
	}
	return m, nil
}

// Files returns the files the Source reads.
func (s *Source) Files() Files { return s.files }

// Certificate is the current certificate (nil when none is configured).
func (s *Source) Certificate() *tls.Certificate { return s.set.Get().cert }

// Pool is the current trust pool.
func (s *Source) Pool() *x509.CertPool { return s.set.Get().pool }

// ServerConfig is a server configuration that takes the current material
// at every handshake. clientAuth says whether clients must present a
// certificate (tls.RequireAndVerifyClientCert for mutual TLS,
// tls.VerifyClientCertIfGiven where a certificate is optional); any
// certificate presented is verified against the CA. nextProtos are the
// ALPN protocols ("h2" for gRPC).
func (s *Source) ServerConfig(clientAuth tls.ClientAuthType, nextProtos ...string) *tls.Config {
	protos := append([]string(nil), nextProtos...)
	return &tls.Config{
		MinVersion: MinVersion,
		NextProtos: protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.set.Get()
			if m.cert == nil {
				return nil, errors.New("tls: no server certificate configured")
			}
			return &tls.Config{
				MinVersion:   MinVersion,
				Certificates: []tls.Certificate{*m.cert},
				ClientAuth:   clientAuth,
				ClientCAs:    m.pool,
				NextProtos:   protos,
			}, nil
		},
	}
}

// ClientConfig is a client configuration with the current material: the
// server is verified against the CA and must be valid for serverName (a
// host name or IP); this party's certificate, when configured, is
// presented to servers that ask.
func (s *Source) ClientConfig(serverName string, nextProtos ...string) *tls.Config {
	m := s.set.Get()
	cfg := &tls.Config{
		MinVersion: MinVersion,
		RootCAs:    m.pool,
		ServerName: serverName,
		NextProtos: append([]string(nil), nextProtos...),
	}
	if m.cert != nil {
		cfg.Certificates = []tls.Certificate{*m.cert}
	}
	return cfg
}

// ClientTLSConfig is a client configuration for libraries that take a
// *tls.Config and set the server name themselves (the etcd client, the
// SDKs): the trust pool is the CA as it is now, and the client
// certificate is read at every handshake (it rotates without a restart;
// a new CA needs a new configuration).
func (s *Source) ClientTLSConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: MinVersion, RootCAs: s.Pool()}
	if s.files.Cert != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.Certificate(), nil
		}
	}
	return cfg
}

// ServerCredentials are gRPC server credentials over ServerConfig.
func (s *Source) ServerCredentials(clientAuth tls.ClientAuthType) credentials.TransportCredentials {
	return credentials.NewTLS(s.ServerConfig(clientAuth, "h2"))
}

// ClientCredentials are gRPC client credentials that build a fresh
// ClientConfig for every connection, verifying the server against the
// host the connection was made to.
func (s *Source) ClientCredentials() credentials.TransportCredentials {
	return &clientCreds{src: s}
}

type clientCreds struct {
	src      *Source
	override string
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	host := c.override
	if host == "" {
		host = authority
		if h, _, err := net.SplitHostPort(authority); err == nil {
			host = h
		}
	}
	return credentials.NewTLS(c.src.ClientConfig(host)).ClientHandshake(ctx, authority, raw)
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsutil: client credentials cannot serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (c *clientCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

// OverrideServerName is part of the (deprecated) gRPC interface: it fixes
// the name the server certificate is verified against.
func (c *clientCreds) OverrideServerName(name string) error {
	c.override = name
	return nil
}

// PeerCertificate is the verified leaf certificate the other side of a
// TLS connection presented, or nil (no TLS, no certificate, or one the
// handshake did not verify).
func PeerCertificate(cs tls.ConnectionState) *x509.Certificate {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}
