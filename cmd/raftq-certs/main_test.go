package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/nodeid"
	"github.com/raftq/raftq/internal/tlsutil"
)

// TestCerts: the files are written, load as a node's TLS material and a
// tokens file, and a second run keeps the CA and the tokens but renews
// the certificates.
func TestCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if code := run([]string{"--dir", dir, "--nodes", "a=a.example/10.9.9.1,b", "--hosts", "broker.example,10.1.2.3"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, n := range []string{"node.a", "node.b", "svcd", "etcd", "client"} {
		if _, err := tlsutil.Load(tlsutil.Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, n+".crt"), Key: filepath.Join(dir, n+".key")}, nil); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	for _, k := range []string{"node.a.key", "client.key", "ca/ca.key"} {
		if fi, err := os.Stat(filepath.Join(dir, k)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v", k, fi.Mode(), err)
		}
	}
	// The CA key lives apart from the node keys.
	if fi, err := os.Stat(filepath.Join(dir, "ca")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("ca/: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); !os.IsNotExist(err) {
		t.Fatalf("a CA key next to the node keys: %v", err)
	}
	// Only node certificates carry a node URI, each its own, and each node
	// its own hosts.
	leaf := func(name string) *x509.Certificate {
		b, _ := pem.Decode([]byte(read(name + ".crt")))
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for name, want := range map[string]string{"node.a": "a", "node.b": "b", "svcd": "", "etcd": "", "client": ""} {
		id, ok := nodeid.FromCert(leaf(name))
		if id != want || ok != (want != "") {
			t.Errorf("%s: node id %q %v, want %q", name, id, ok, want)
		}
	}
	if a, b := leaf("node.a"), leaf("node.b"); !slices.Contains(a.DNSNames, "a.example") || slices.Contains(b.DNSNames, "a.example") ||
		!slices.ContainsFunc(a.IPAddresses, func(ip net.IP) bool { return ip.String() == "10.9.9.1" }) {
		t.Errorf("per-node SANs: a %v %v, b %v", a.DNSNames, a.IPAddresses, b.DNSNames)
	}
	a, err := auth.New(auth.Config{TokensFile: filepath.Join(dir, "tokens.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	admin := strings.TrimSpace(read("tokens/admin.token"))
	if p, err := a.Verify(admin); err != nil || !p.Has(auth.RoleAdmin) {
		t.Fatalf("admin token: %v %v", p, err)
	}
	ca, cert := read("ca.crt"), read("node.a.crt")
	if code := run([]string{"--dir", dir, "--nodes", "a,b"}, &out, &errb); code != 0 {
		t.Fatalf("second run: %s", errb.String())
	}
	if read("ca.crt") != ca || strings.TrimSpace(read("tokens/admin.token")) != admin {
		t.Fatal("a second run replaced the CA or the tokens")
	}
	if read("node.a.crt") == cert {
		t.Fatal("a second run did not renew the node certificate")
	}
	for _, bad := range []string{"a/b", "a,a", "=h"} {
		if code := run([]string{"--dir", dir, "--nodes", bad}, &out, &errb); code != 2 {
			t.Fatalf("--nodes %q was accepted", bad)
		}
	}
	// A directory of the older layout (ca.key next to the node keys) has
	// its CA key moved into ca/ and keeps its CA.
	if err := os.Rename(filepath.Join(dir, "ca", "ca.key"), filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	if code := run([]string{"--dir", dir, "--nodes", "a"}, &out, &errb); code != 0 {
		t.Fatalf("old layout: %s", errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); !os.IsNotExist(err) || read("ca.crt") != ca {
		t.Fatalf("old layout: CA key left in place (%v) or CA replaced", err)
	}
}
