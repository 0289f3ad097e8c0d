package main

import (
	"errors"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/tlsutil"
)

// securityKeys are svcd's TLS and auth settings, off by default (see
// SECURITY.md).
func securityKeys() []config.Key {
	nonNeg := func(v any) error {
		switch x := v.(type) {
		case int:
			if x < 0 {
				return errors.New("must not be negative")
			}
		case float64:
			if x < 0 {
				return errors.New("must not be negative")
			}
		}
		return nil
	}
	return append([]config.Key{
		{Name: "tls.ca", Flag: "tls-ca", Kind: config.String, Usage: "CA certificate(s) (PEM) client certificates are verified against; setting tls.* serves gRPC and HTTP over TLS"},
		{Name: "tls.cert", Flag: "tls-cert", Kind: config.String, Usage: "svcd's certificate (PEM), re-read when it changes"},
		{Name: "tls.key", Flag: "tls-key", Kind: config.String, Usage: "svcd's private key (PEM), re-read when it changes"},
		{Name: "tls.require_client_cert", Flag: "tls-require-client-cert", Kind: config.Bool, Default: false, Usage: "clients must present a certificate from tls.ca"},
		{Name: "auth.tokens_file", Flag: "auth-tokens-file", Kind: config.String,
			Usage: "YAML file of bearer tokens (SHA-256 hashes, roles, queue patterns); setting it or a JWT key turns auth on"},
		{Name: "auth.jwt.hs256_secret_file", Flag: "auth-jwt-secret-file", Kind: config.String, Usage: "file holding the HS256 secret JWTs are signed with (at least 32 bytes)"},
		{Name: "auth.jwt.rs256_public_key_file", Flag: "auth-jwt-public-key-file", Kind: config.String, Usage: "PEM file of the RSA public key RS256 JWTs are verified with"},
		{Name: "auth.jwt.issuer", Flag: "auth-jwt-issuer", Kind: config.String, Usage: "required iss of JWTs"},
		{Name: "auth.jwt.audience", Flag: "auth-jwt-audience", Kind: config.String, Usage: "required aud of JWTs"},
		{Name: "auth.rate_limit", Flag: "auth-rate-limit", Kind: config.Float, Default: limits.DefaultRatePerPrincipal, Check: nonNeg,
			Usage: "requests per second per principal, with auth on (0: unlimited)"},
		{Name: "auth.rate_burst", Flag: "auth-rate-burst", Kind: config.Int, Default: limits.DefaultRateBurst, Check: nonNeg, Usage: "per-principal burst (0: the rate)"},
		{Name: "etcd.tls.ca", Flag: "etcd-tls-ca", Kind: config.String, Usage: "CA (PEM) etcd's server certificates are verified against (https endpoints; default with TLS on: tls.ca)"},
		{Name: "etcd.tls.cert", Flag: "etcd-tls-cert", Kind: config.String, Usage: "client certificate (PEM) presented to etcd (default with TLS on: tls.cert)"},
		{Name: "etcd.tls.key", Flag: "etcd-tls-key", Kind: config.String, Usage: "client key (PEM) presented to etcd (default with TLS on: tls.key)"},
	}, auth.AuditKeys()...)
}

// applySecurity maps the keys onto the settings, loading the files once
// so a missing or bad one is reported with its key before anything
// starts.
func applySecurity(l *config.Loader, v *config.Values, s *settings) []error {
	var errs []error
	s.srv.TLS = tlsutil.Files{CA: v.String("tls.ca"), Cert: v.String("tls.cert"), Key: v.String("tls.key")}
	s.srv.RequireClientCert = v.Bool("tls.require_client_cert")
	if s.srv.TLS.Enabled() {
		if s.srv.TLS.CA == "" || s.srv.TLS.Cert == "" || s.srv.TLS.Key == "" {
			errs = append(errs, l.Errorf("tls.cert", "tls.ca, tls.cert and tls.key must all be set to turn TLS on"))
		} else if _, err := tlsutil.Load(s.srv.TLS, nil); err != nil {
			errs = append(errs, l.Errorf("tls.cert", "%v", err))
		}
	} else if s.srv.RequireClientCert {
		errs = append(errs, l.Errorf("tls.require_client_cert", "needs tls.ca, tls.cert and tls.key"))
	}
	s.srv.Auth = auth.Config{
		TokensFile: v.String("auth.tokens_file"),
		JWT: auth.JWTConfig{
			HS256SecretFile:    v.String("auth.jwt.hs256_secret_file"),
			RS256PublicKeyFile: v.String("auth.jwt.rs256_public_key_file"),
			Issuer:             v.String("auth.jwt.issuer"),
			Audience:           v.String("auth.jwt.audience"),
		},
		RateLimit: v.Float("auth.rate_limit"),
		RateBurst: v.Int("auth.rate_burst"),
	}
	if s.srv.Auth.Enabled() {
		if _, err := auth.New(auth.Config{TokensFile: s.srv.Auth.TokensFile}); err != nil {
			errs = append(errs, l.Errorf("auth.tokens_file", "%v", err))
		}
		if _, err := auth.New(auth.Config{JWT: s.srv.Auth.JWT}); err != nil {
			errs = append(errs, l.Errorf("auth.jwt.hs256_secret_file", "%v", err))
		}
		if !s.srv.TLS.Enabled() {
			errs = append(errs, l.Errorf("tls.cert", "auth needs TLS: tokens must not cross the network in clear"))
		}
	}
	f := tlsutil.Files{CA: v.String("etcd.tls.ca"), Cert: v.String("etcd.tls.cert"), Key: v.String("etcd.tls.key")}
	if !f.Enabled() && s.srv.TLS.Enabled() && len(s.etcd) > 0 {
		// svcd's own certificate is its etcd client certificate too.
		f = s.srv.TLS
	}
	if err := l.CheckEtcdEndpoints("etcd.endpoints", s.etcd, s.srv.TLS.Enabled() || f.Enabled()); err != nil {
		errs = append(errs, err)
	}
	if f.Enabled() {
		src, err := tlsutil.Load(f, nil)
		if err != nil {
			errs = append(errs, l.Errorf("etcd.tls.ca", "%v", err))
		} else {
			s.etcdTLS = src.ClientTLSConfig()
		}
	}
	return errs
}
