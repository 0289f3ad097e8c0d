package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/tlsutil"
)

// TestCerts: the files are written, load as a node's TLS material and a
// tokens file, and a second run keeps the CA and the tokens but renews
// the certificates.
func TestCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if code := run([]string{"--dir", dir, "--nodes", "a,b", "--hosts", "broker.example,10.1.2.3"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, n := range []string{"node.a", "node.b", "svcd", "client"} {
		if _, err := tlsutil.Load(tlsutil.Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, n+".crt"), Key: filepath.Join(dir, n+".key")}, nil); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "node.a.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
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
	if code := run([]string{"--dir", dir, "--nodes", "a/b"}, &out, &errb); code != 2 {
		t.Fatal("a bad node id was accepted")
	}
}
