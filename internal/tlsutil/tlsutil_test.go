package tlsutil

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/internal/certgen"
)

func devPKI(t *testing.T) *certgen.Dev {
	t.Helper()
	d, err := certgen.NewDev(t.TempDir(), "test CA", []string{"n1", "n2"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func files(d *certgen.Dev, name string) Files {
	return Files{CA: d.CAFile(), Cert: d.CertFile(name), Key: d.KeyFile(name)}
}

func load(t *testing.T, f Files) *Source {
	t.Helper()
	s, err := Load(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadRefusesBadFiles(t *testing.T) {
	d := devPKI(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		f    Files
		want string
	}{
		{"no CA", Files{Cert: d.CertFile("node.n1"), Key: d.KeyFile("node.n1")}, "CA file is required"},
		{"cert without key", Files{CA: d.CAFile(), Cert: d.CertFile("node.n1")}, "together"},
		{"missing CA file", Files{CA: filepath.Join(t.TempDir(), "nope.crt")}, "no such file"},
		{"CA not PEM", Files{CA: garbage}, "no PEM certificate"},
		{"key of another cert", Files{CA: d.CAFile(), Cert: d.CertFile("node.n1"), Key: d.KeyFile("node.n2")}, "private key does not match"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.f, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// echoServer accepts TLS connections with cfg and answers each line with
// the CN of the client's verified certificate ("-" without one).
func echoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					return
				}
				cn := "-"
				if pc := PeerCertificate(tc.ConnectionState()); pc != nil {
					cn = pc.Subject.CommonName
				}
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					io.WriteString(c, cn+"\n")
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

// call makes one connection and returns the server's leaf certificate
// and the CN the server saw for us.
func call(cfg *tls.Config, addr string) (*x509.Certificate, string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return nil, "", err
	}
	return c.ConnectionState().PeerCertificates[0], strings.TrimSpace(line), nil
}

func TestMutualTLSRotationWithoutRestart(t *testing.T) {
	d := devPKI(t)
	server := load(t, files(d, "node.n1"))
	addr := echoServer(t, server.ServerConfig(tls.RequireAndVerifyClientCert))
	client := load(t, files(d, "node.n2"))

	cert1, cn, err := call(client.ClientConfig("127.0.0.1"), addr)
	if err != nil || cn != "node.n2" {
		t.Fatalf("first call: %v (server saw %q)", err, cn)
	}

	// Rotate the server's certificate on disk: the next connection gets
	// the new one, with no restart of the listener.
	if err := d.Write("node.n1", certgen.LocalOptions("node.n1", true, true)); err != nil {
		t.Fatal(err)
	}
	cert2, _, err := call(client.ClientConfig("127.0.0.1"), addr)
	if err != nil {
		t.Fatal(err)
	}
	if cert2.SerialNumber.Cmp(cert1.SerialNumber) == 0 {
		t.Fatal("server still presents the certificate from before the rotation")
	}

	// Rotate the client's: the server sees the new one (new CN this time).
	if err := d.Write("node.n2", certgen.LocalOptions("node.n2-renewed", true, true)); err != nil {
		t.Fatal(err)
	}
	if _, cn, err = call(client.ClientConfig("127.0.0.1"), addr); err != nil || cn != "node.n2-renewed" {
		t.Fatalf("after client rotation: %v, server saw %q", err, cn)
	}

	// A broken rotation (a key that does not match) keeps the last good
	// pair in force.
	if err := certgen.WriteAtomic(d.KeyFile("node.n1"), mustRead(t, d.KeyFile("node.n2")), 0o600); err != nil {
		t.Fatal(err)
	}
	cert3, _, err := call(client.ClientConfig("127.0.0.1"), addr)
	if err != nil || cert3.SerialNumber.Cmp(cert2.SerialNumber) != 0 {
		t.Fatalf("after a broken rotation: %v (serial changed: %v)", err, err == nil && cert3.SerialNumber.Cmp(cert2.SerialNumber) != 0)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRefusals(t *testing.T) {
	d := devPKI(t)
	other := devPKI(t) // another CA
	server := load(t, files(d, "node.n1"))
	addr := echoServer(t, server.ServerConfig(tls.RequireAndVerifyClientCert))

	t.Run("client cert from another CA", func(t *testing.T) {
		c := load(t, Files{CA: d.CAFile(), Cert: other.CertFile("node.n2"), Key: other.KeyFile("node.n2")})
		if _, _, err := call(c.ClientConfig("127.0.0.1"), addr); err == nil {
			t.Fatal("a client certificate from another CA was accepted")
		}
	})
	t.Run("no client cert", func(t *testing.T) {
		c := load(t, Files{CA: d.CAFile()})
		if _, _, err := call(c.ClientConfig("127.0.0.1"), addr); err == nil {
			t.Fatal("a client without a certificate was accepted")
		}
	})
	t.Run("server from another CA", func(t *testing.T) {
		c := load(t, Files{CA: other.CAFile(), Cert: other.CertFile("node.n2"), Key: other.KeyFile("node.n2")})
		_, _, err := call(c.ClientConfig("127.0.0.1"), addr)
		var ve *tls.CertificateVerificationError
		if err == nil || !asVerifyErr(err, &ve) {
			t.Fatalf("server with a certificate of another CA: %v, want a verification error", err)
		}
	})
	t.Run("wrong host name", func(t *testing.T) {
		c := load(t, files(d, "node.n2"))
		if _, _, err := call(c.ClientConfig("db.example"), addr); err == nil {
			t.Fatal("a server certificate was accepted for a name it does not carry")
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		if strings.Contains(string(b), "-") || strings.Contains(string(b), "node") {
			t.Fatalf("plaintext got an answer: %q", b)
		}
	})
	t.Run("TLS 1.1", func(t *testing.T) {
		c := load(t, files(d, "node.n2"))
		cfg := c.ClientConfig("127.0.0.1")
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
		if _, _, err := call(cfg, addr); err == nil {
			t.Fatal("TLS 1.1 was accepted")
		}
	})
}

func asVerifyErr(err error, target **tls.CertificateVerificationError) bool {
	for e := err; e != nil; {
		if v, ok := e.(*tls.CertificateVerificationError); ok {
			*target = v
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

func TestCARotation(t *testing.T) {
	d := devPKI(t)
	server := load(t, files(d, "node.n1"))
	addr := echoServer(t, server.ServerConfig(tls.VerifyClientCertIfGiven))
	// The old client keeps its own copy of the old CA.
	oldCA := filepath.Join(t.TempDir(), "old-ca.crt")
	if err := os.WriteFile(oldCA, mustRead(t, d.CAFile()), 0o644); err != nil {
		t.Fatal(err)
	}
	oldClient := load(t, Files{CA: oldCA, Cert: d.CertFile("node.n2"), Key: d.KeyFile("node.n2")})
	if _, _, err := call(oldClient.ClientConfig("127.0.0.1"), addr); err != nil {
		t.Fatal(err)
	}
	// A new CA replaces the old one on the server (CA file, certificate
	// and key renamed into place): clients of the old CA are refused, the
	// new CA's are accepted — all without a restart.
	next, err := certgen.NewDev(t.TempDir(), "next CA", []string{"n1", "n2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{next.KeyFile("node.n1"), d.KeyFile("node.n1")}, {next.CertFile("node.n1"), d.CertFile("node.n1")}, {next.CAFile(), d.CAFile()}} {
		if err := certgen.WriteAtomic(p[1], mustRead(t, p[0]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newClient := load(t, files(next, "node.n2"))
	if _, cn, err := call(newClient.ClientConfig("127.0.0.1"), addr); err != nil || cn != "node.n2" {
		t.Fatalf("client of the new CA: %v (%q)", err, cn)
	}
	if _, _, err := call(oldClient.ClientConfig("127.0.0.1"), addr); err == nil {
		t.Fatal("a client of the old CA still verifies the server")
	}
}

func TestGRPCCredentials(t *testing.T) {
	d := devPKI(t)
	server := load(t, files(d, "node.n1"))
	srv := grpc.NewServer(grpc.Creds(server.ServerCredentials(tls.VerifyClientCertIfGiven)))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	client := load(t, files(d, "node.n2"))
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(client.ClientCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		t.Fatalf("TLS call: %v", err)
	}

	plain, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	defer pcancel()
	_, err = healthpb.NewHealthClient(plain).Check(pctx, &healthpb.HealthCheckRequest{})
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Fatalf("plaintext call to a TLS port: %v, want Unavailable", err)
	}
}
