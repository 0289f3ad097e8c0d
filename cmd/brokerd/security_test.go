package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/limits"
)

// Bad TLS and auth settings are refused before anything starts, each
// naming its key; good ones reach brokerd.Config.
func TestSecurityConfig(t *testing.T) {
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tokens:\n  - {name: ops, sha256: "+auth.HashToken("t")+", roles: [admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.secret")
	if err := os.WriteFile(short, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	base := []string{"--id", "n1", "--data-dir", data}
	tlsArgs := []string{"--tls-ca", pki.CAFile(), "--tls-cert", pki.CertFile("node.n1"), "--tls-key", pki.KeyFile("node.n1")}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", pki.CertFile("node.n1")}, "tls.cert (flag --tls-cert, env RAFTQ_TLS_CERT): tls.ca, tls.cert and tls.key must all be set"},
		{[]string{"--tls-ca", pki.CAFile(), "--tls-cert", pki.CertFile("node.n1"), "--tls-key", filepath.Join(dir, "nope.key")}, "no such file"},
		{[]string{"--tls-ca", pki.CAFile(), "--tls-cert", pki.CertFile("node.n1"), "--tls-key", pki.KeyFile("client")}, "private key does not match"},
		{[]string{"--tls-require-client-cert"}, "tls.require_client_cert"},
		{[]string{"--auth-tokens-file", tokens, "--auth-node-names", "node.*"}, "auth needs TLS"},
		{append([]string{"--auth-tokens-file", tokens}, tlsArgs...), "auth.node_names (flag --auth-node-names, env RAFTQ_AUTH_NODE_NAMES): required with auth on"},
		{append([]string{"--auth-tokens-file", filepath.Join(dir, "none.yaml"), "--auth-node-names", "node.*"}, tlsArgs...), "auth.tokens_file"},
		{append([]string{"--auth-jwt-secret-file", short, "--auth-node-names", "node.*"}, tlsArgs...), "auth.jwt.hs256_secret_file (flag --auth-jwt-secret-file, env RAFTQ_AUTH_JWT_HS256_SECRET_FILE): jwt secret"},
		{[]string{"--auth-rate-limit", "-1"}, "auth.rate_limit"},
		{[]string{"--etcd", "https://127.0.0.1:2379", "--etcd-tls-ca", filepath.Join(dir, "none.crt")}, "etcd.tls.ca"},
		{[]string{"--max-waiters-per-conn", "-1"}, "limits.max_waiters_per_conn"},
		{[]string{"--max-waiters-per-principal", "-1"}, "limits.max_waiters_per_principal"},
		{[]string{"--max-streams", "-1"}, "limits.max_streams"},
		{[]string{"--max-conns-per-ip", "-1"}, "limits.max_conns_per_ip"},
		{[]string{"--audit-refusals-per-sec", "0"}, "audit.refusals_per_sec"},
		// TLS on: etcd only over https (live config, registrations and the
		// bootstrap record must not cross the network in clear).
		{append([]string{"--etcd", "http://127.0.0.1:2379"}, tlsArgs...), `etcd.endpoints (flag --etcd, env RAFTQ_ETCD_ENDPOINTS): "http://127.0.0.1:2379" is not an https:// URL, and TLS is on`},
		{[]string{"--etcd", "127.0.0.1:2379", "--etcd-tls-ca", pki.CAFile()}, `etcd.endpoints (flag --etcd, env RAFTQ_ETCD_ENDPOINTS): "127.0.0.1:2379" is not an https:// URL`},
	}
	for _, c := range cases {
		// `brokerd config` loads and checks exactly what the daemon does,
		// and never starts a node.
		var out, errb bytes.Buffer
		if code := runConfig(append(append([]string{}, base...), c.args...), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", c.args, code, errb.String())
		}
		if !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: stderr lacks %q:\n%s", c.args, c.want, errb.String())
		}
	}
	// The daemon itself refuses to start on it, with the same line.
	var out, errb bytes.Buffer
	if code := run(append(append([]string{"--etcd", "http://127.0.0.1:2379"}, base...), tlsArgs...), &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), `etcd.endpoints (flag --etcd, env RAFTQ_ETCD_ENDPOINTS): "http://127.0.0.1:2379" is not an https:// URL`) {
		t.Fatalf("brokerd with TLS and an http etcd endpoint: exit %d\n%s", code, errb.String())
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("invalid configuration created the data dir: %v", err)
	}
	// With TLS on and no etcd.tls.*, the node's own certificate is its
	// etcd client certificate.
	if cfg, _, err := load(newLoader(), append(append([]string{"--etcd", "https://127.0.0.1:2379"}, base...), tlsArgs...)); err != nil || cfg.Etcd.TLS == nil {
		t.Fatalf("https etcd with TLS on: %v, etcd TLS %v", err, cfg.Etcd.TLS)
	}

	// A good configuration maps onto brokerd.Config, and `brokerd config`
	// prints it.
	l := newLoader()
	args := append(append(append([]string{}, base...), tlsArgs...), "--auth-tokens-file", tokens, "--auth-node-names", "node.*", "--auth-rate-limit", "50")
	cfg, _, err := load(l, args)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.Cert != pki.CertFile("node.n1") || cfg.Auth.TokensFile != tokens || cfg.Auth.NodeNames[0] != "node.*" || cfg.Auth.RateLimit != 50 || cfg.Limits.MaxWaitersPerConn != 1024 {
		t.Fatalf("config not mapped: %+v %+v", cfg.TLS, cfg.Auth)
	}
	out.Reset()
	errb.Reset()
	if code := runConfig(args, &out, &errb); code != 0 || !strings.Contains(out.String(), "require_client_cert: false") || !strings.Contains(out.String(), "tokens_file: "+tokens) {
		t.Fatalf("brokerd config: %d\n%s%s", code, out.String(), errb.String())
	}

	// The secure profile as make run starts it (no rate flags): the
	// default per-principal rate limit and the caps apply, and audit
	// lines go to audit.file.
	auditFile := filepath.Join(dir, "n1.audit.log")
	cfg, x, err := load(newLoader(), append(append(append([]string{}, base...), tlsArgs...), "--auth-tokens-file", tokens, "--auth-node-names", "node.*", "--audit-file", auditFile))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Auth.RateLimit != limits.DefaultRatePerPrincipal || cfg.Auth.RateBurst != limits.DefaultRateBurst ||
		cfg.Limits.MaxWaitersPerPrincipal != limits.DefaultMaxWaitersPerPrincipal || cfg.Limits.MaxStreams != limits.DefaultMaxStreams ||
		cfg.Limits.MaxConnsPerIP != limits.DefaultMaxConnsPerIP {
		t.Fatalf("secure profile defaults not applied: %+v %+v", cfg.Auth, cfg.Limits)
	}
	a, err := x.openAudit(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(auditFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit.file not opened 0600: %v %v", fi, err)
	}
}
