package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/limits"
)

func TestSecurityConfig(t *testing.T) {
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tokens: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsArgs := []string{"--tls-ca", pki.CAFile(), "--tls-cert", pki.CertFile("svcd"), "--tls-key", pki.KeyFile("svcd")}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth-tokens-file", tokens}, "auth needs TLS"},
		{[]string{"--tls-cert", pki.CertFile("svcd")}, "tls.ca, tls.cert and tls.key must all be set"},
		{[]string{"--tls-ca", pki.CAFile(), "--tls-cert", pki.CertFile("svcd"), "--tls-key", pki.KeyFile("client")}, "private key does not match"},
		{append([]string{"--auth-tokens-file", filepath.Join(dir, "none")}, tlsArgs...), "auth.tokens_file"},
		{[]string{"--tls-require-client-cert"}, "tls.require_client_cert"},
		{[]string{"--audit-refusal-burst", "-1"}, "audit.refusal_burst"},
		{append([]string{"--etcd", "http://127.0.0.1:2379"}, tlsArgs...), `etcd.endpoints (flag --etcd, env RAFTQ_ETCD_ENDPOINTS): "http://127.0.0.1:2379" is not an https:// URL, and TLS is on`},
	} {
		_, _, err := load(c.args, io.Discard)
		var ce configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a configuration error containing %q", c.args, err, c.want)
		}
	}
	if _, s, err := load(append([]string{"--etcd", "https://127.0.0.1:2379"}, tlsArgs...), io.Discard); err != nil || s.etcdTLS == nil {
		t.Fatalf("https etcd with TLS on: %v (svcd's own certificate is its etcd client certificate)", err)
	}
	_, s, err := load(append([]string{"--auth-tokens-file", tokens, "--tls-require-client-cert", "--brokers", "127.0.0.1:7101"}, tlsArgs...), io.Discard)
	if err != nil || s.srv.TLS.Cert != pki.CertFile("svcd") || !s.srv.RequireClientCert || s.srv.Auth.TokensFile != tokens {
		t.Fatalf("good settings: %v %+v", err, s.srv)
	}
	// The secure profile's default rate limit, and the audit file.
	if s.srv.Auth.RateLimit != limits.DefaultRatePerPrincipal || s.srv.Auth.RateBurst != limits.DefaultRateBurst {
		t.Fatalf("default rate limit not applied: %+v", s.srv.Auth)
	}
	auditFile := filepath.Join(dir, "svcd.audit.log")
	v, _, err := load(append([]string{"--auth-tokens-file", tokens, "--audit-file", auditFile, "--brokers", "127.0.0.1:7101"}, tlsArgs...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.OpenAuditFromConfig(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, err := os.Stat(auditFile); err != nil {
		t.Fatalf("audit.file not opened: %v", err)
	}
}
