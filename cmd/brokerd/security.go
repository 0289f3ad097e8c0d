package main

import (
	"errors"
	"time"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/tlsutil"
)

// securityKeys are brokerd's TLS, auth and API limit settings. All are
// off by default; see SECURITY.md.
func securityKeys() []config.Key {
	def := limits.DefaultBroker()
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
		case time.Duration:
			if x < 0 {
				return errors.New("must not be negative")
			}
		}
		return nil
	}
	return append([]config.Key{
		{Name: "tls.ca", Flag: "tls-ca", Kind: config.String, Usage: "CA certificate(s) (PEM) peers and clients are verified against; setting tls.* turns TLS on for Raft (mutual), gRPC and admin HTTP"},
		{Name: "tls.cert", Flag: "tls-cert", Kind: config.String, Usage: "this node's certificate (PEM), re-read when it changes"},
		{Name: "tls.key", Flag: "tls-key", Kind: config.String, Usage: "this node's private key (PEM), re-read when it changes"},
		{Name: "tls.require_client_cert", Flag: "tls-require-client-cert", Kind: config.Bool, Default: false,
			Usage: "gRPC and admin clients must present a certificate from tls.ca (Raft always requires one)"},
		{Name: "auth.tokens_file", Flag: "auth-tokens-file", Kind: config.String,
			Usage: "YAML file of bearer tokens (SHA-256 hashes, roles, queue patterns); setting it or a JWT key turns auth on"},
		{Name: "auth.jwt.hs256_secret_file", Flag: "auth-jwt-secret-file", Kind: config.String, Usage: "file holding the HS256 secret JWTs are signed with (at least 32 bytes)"},
		{Name: "auth.jwt.rs256_public_key_file", Flag: "auth-jwt-public-key-file", Kind: config.String, Usage: "PEM file of the RSA public key RS256 JWTs are verified with"},
		{Name: "auth.jwt.issuer", Flag: "auth-jwt-issuer", Kind: config.String, Usage: "required iss of JWTs"},
		{Name: "auth.jwt.audience", Flag: "auth-jwt-audience", Kind: config.String, Usage: "required aud of JWTs"},
		{Name: "auth.node_names", Flag: "auth-node-names", Kind: config.List,
			Usage: "certificate common names (glob patterns) of the cluster's nodes, e.g. node.*: they may join without a token"},
		{Name: "auth.rate_limit", Flag: "auth-rate-limit", Kind: config.Float, Default: limits.DefaultRatePerPrincipal, Check: nonNeg,
			Usage: "requests per second per principal on this node, with auth on (0: unlimited)"},
		{Name: "auth.rate_burst", Flag: "auth-rate-burst", Kind: config.Int, Default: limits.DefaultRateBurst, Check: nonNeg, Usage: "per-principal burst (0: the rate)"},
		{Name: "etcd.tls.ca", Flag: "etcd-tls-ca", Kind: config.String, Usage: "CA (PEM) etcd's server certificates are verified against (https endpoints; default with TLS on: tls.ca)"},
		{Name: "etcd.tls.cert", Flag: "etcd-tls-cert", Kind: config.String, Usage: "client certificate (PEM) presented to etcd (default with TLS on: tls.cert)"},
		{Name: "etcd.tls.key", Flag: "etcd-tls-key", Kind: config.String, Usage: "client key (PEM) presented to etcd (default with TLS on: tls.key)"},
		{Name: "limits.max_waiters_per_conn", Flag: "max-waiters-per-conn", Kind: config.Int, Default: def.MaxWaitersPerConn, Check: nonNeg,
			Usage: "Fetch long polls one client connection may have parked (0: unlimited)"},
		{Name: "limits.max_request_time", Flag: "max-request-time", Kind: config.Duration, Default: def.MaxRequestTime, Check: nonNeg,
			Usage: "longest a call may run (a Fetch may wait its max_wait on top; 0: no cap)"},
		{Name: "limits.max_waiters_per_principal", Flag: "max-waiters-per-principal", Kind: config.Int, Default: def.MaxWaitersPerPrincipal, Check: nonNeg,
			Usage: "Fetch long polls one principal may have parked on this node, with auth on (0: unlimited)"},
		{Name: "limits.max_waiters", Flag: "max-waiters", Kind: config.Int, Default: def.MaxWaiters, Check: nonNeg,
			Usage: "Fetch long polls parked on this node in all (0: unlimited)"},
		{Name: "limits.max_streams_per_principal", Flag: "max-streams-per-principal", Kind: config.Int, Default: def.MaxStreamsPerPrincipal, Check: nonNeg,
			Usage: "streaming calls (health Watch, snapshot, restore) one principal may have open, with auth on; unauthenticated callers share one budget (0: unlimited)"},
		{Name: "limits.max_streams", Flag: "max-streams", Kind: config.Int, Default: def.MaxStreams, Check: nonNeg,
			Usage: "streaming calls open on this node in all (0: unlimited)"},
		{Name: "limits.max_conns", Flag: "max-conns", Kind: config.Int, Default: def.MaxConns, Check: nonNeg,
			Usage: "gRPC connections open on this node (more are closed when accepted; 0: unlimited)"},
		{Name: "limits.max_conns_per_ip", Flag: "max-conns-per-ip", Kind: config.Int, Default: def.MaxConnsPerIP, Check: nonNeg,
			Usage: "gRPC connections open from one remote IP (0: unlimited)"},
	}, auth.AuditKeys()...)
}

// etcdTLSFiles are the TLS files brokerd uses as an etcd client:
// etcd.tls.*, else, with TLS on, the node's own (tls.*); and the error
// of an etcd endpoint that is not https:// while TLS is on.
func etcdTLSFiles(l *config.Loader, v *config.Values) (tlsutil.Files, error) {
	own := tlsutil.Files{CA: v.String("tls.ca"), Cert: v.String("tls.cert"), Key: v.String("tls.key")}
	f := tlsutil.Files{CA: v.String("etcd.tls.ca"), Cert: v.String("etcd.tls.cert"), Key: v.String("etcd.tls.key")}
	eps := v.List("etcd.endpoints")
	if !f.Enabled() && own.Enabled() && len(eps) > 0 {
		f = own // the node's own certificate is its etcd client certificate too
	}
	return f, l.CheckEtcdEndpoints("etcd.endpoints", eps, own.Enabled() || f.Enabled())
}

// applySecurity maps the security keys onto cfg, loading the TLS files
// and the authorizer once so a missing or bad file is reported here,
// with its key, before anything starts.
func applySecurity(l *config.Loader, v *config.Values, cfg *daemon.Config) []error {
	var errs []error
	cfg.TLS = brokerd.TLSConfig{
		Files:             tlsutil.Files{CA: v.String("tls.ca"), Cert: v.String("tls.cert"), Key: v.String("tls.key")},
		RequireClientCert: v.Bool("tls.require_client_cert"),
	}
	if cfg.TLS.Enabled() {
		if cfg.TLS.Cert == "" || cfg.TLS.Key == "" || cfg.TLS.CA == "" {
			errs = append(errs, l.Errorf("tls.cert", "tls.ca, tls.cert and tls.key must all be set to turn TLS on"))
		} else if _, err := tlsutil.Load(cfg.TLS.Files, nil); err != nil {
			errs = append(errs, l.Errorf("tls.cert", "%v", err))
		}
	} else if cfg.TLS.RequireClientCert {
		errs = append(errs, l.Errorf("tls.require_client_cert", "needs tls.ca, tls.cert and tls.key"))
	}
	cfg.Auth = auth.Config{
		TokensFile: v.String("auth.tokens_file"),
		JWT: auth.JWTConfig{
			HS256SecretFile:    v.String("auth.jwt.hs256_secret_file"),
			RS256PublicKeyFile: v.String("auth.jwt.rs256_public_key_file"),
			Issuer:             v.String("auth.jwt.issuer"),
			Audience:           v.String("auth.jwt.audience"),
		},
		NodeNames: v.List("auth.node_names"),
		RateLimit: v.Float("auth.rate_limit"),
		RateBurst: v.Int("auth.rate_burst"),
	}
	if cfg.Auth.Enabled() {
		// Each source on its own, so the error names the key to fix.
		if _, err := auth.New(auth.Config{TokensFile: cfg.Auth.TokensFile}); err != nil {
			errs = append(errs, l.Errorf("auth.tokens_file", "%v", err))
		}
		if _, err := auth.New(auth.Config{JWT: cfg.Auth.JWT}); err != nil {
			key := "auth.jwt.hs256_secret_file"
			if cfg.Auth.JWT.HS256SecretFile == "" {
				key = "auth.jwt.rs256_public_key_file"
			}
			errs = append(errs, l.Errorf(key, "%v", err))
		}
		if err := cfg.Auth.Validate(); err != nil {
			errs = append(errs, l.Errorf("auth.node_names", "%v", err))
		}
		if !cfg.TLS.Enabled() {
			errs = append(errs, l.Errorf("tls.cert", "auth needs TLS: tokens must not cross the network in clear, and nodes identify each other by certificate"))
		}
		if len(cfg.Auth.NodeNames) == 0 {
			errs = append(errs, l.Errorf("auth.node_names", "required with auth on: the certificate common names of the cluster's nodes (e.g. node.*)"))
		}
	}
	etcdTLS, err := etcdTLSFiles(l, v)
	if err != nil {
		errs = append(errs, err)
	}
	if etcdTLS.Enabled() {
		src, err := tlsutil.Load(etcdTLS, nil)
		if err != nil {
			errs = append(errs, l.Errorf("etcd.tls.ca", "%v", err))
		} else {
			cfg.Etcd.TLS = src.ClientTLSConfig()
		}
	}
	cfg.Limits.MaxWaitersPerConn = v.Int("limits.max_waiters_per_conn")
	cfg.Limits.MaxRequestTime = v.Duration("limits.max_request_time")
	cfg.Limits.MaxWaitersPerPrincipal = v.Int("limits.max_waiters_per_principal")
	cfg.Limits.MaxWaiters = v.Int("limits.max_waiters")
	cfg.Limits.MaxStreamsPerPrincipal = v.Int("limits.max_streams_per_principal")
	cfg.Limits.MaxStreams = v.Int("limits.max_streams")
	cfg.Limits.MaxConns = v.Int("limits.max_conns")
	cfg.Limits.MaxConnsPerIP = v.Int("limits.max_conns_per_ip")
	return errs
}
