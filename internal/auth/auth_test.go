package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/internal/bearer"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/tlsutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

const (
	producerToken = "tok-producer-orders"
	workerToken   = "tok-worker-orders"
	adminToken    = "tok-admin"
	allToken      = "tok-producer-all"
)

func tokensYAML() string {
	return fmt.Sprintf(`tokens:
  - name: ingest
    sha256: %s
    roles: [producer]
    queues: ["orders.*", "mail"]
  - name: runner
    sha256: %s
    roles: [worker]
    queues: ["orders.*"]
  - name: ops
    sha256: %s
    roles: [admin]
  - name: reporting
    sha256: %s
    roles: [producer, worker]
    queues: ["*"]
`, HashToken(producerToken), HashToken(workerToken), HashToken(adminToken), HashToken(allToken))
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := certgen.WriteAtomic(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// logBuf collects the log lines and, after them, the audit file's.
type logBuf struct {
	bytes.Buffer
	audit string // the audit file
}

// String is the log, then the audit lines.
func (l *logBuf) String() string {
	b, _ := os.ReadFile(l.audit)
	return l.Buffer.String() + string(b)
}

func newAuthorizer(t *testing.T, c Config) (*Authorizer, *logBuf) {
	t.Helper()
	lb := &logBuf{audit: filepath.Join(t.TempDir(), "audit.log")}
	c.Logger = slog.New(slog.NewTextHandler(&lb.Buffer, &slog.HandlerOptions{Level: slog.LevelDebug}))
	audit, err := OpenAuditLog(lb.audit, AuditLimits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	c.Audit = audit
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return a, lb
}

func TestParseTokensRefusesBadFiles(t *testing.T) {
	h := HashToken("x")
	cases := map[string]string{
		"unknown field":        "tokens:\n  - name: a\n    sha256: " + h + "\n    roles: [admin]\n    role: admin\n",
		"no name":              "tokens:\n  - sha256: " + h + "\n    roles: [admin]\n",
		"duplicate name":       "tokens:\n  - {name: a, sha256: " + h + ", roles: [admin]}\n  - {name: a, sha256: " + HashToken("y") + ", roles: [admin]}\n",
		"duplicate hash":       "tokens:\n  - {name: a, sha256: " + h + ", roles: [admin]}\n  - {name: b, sha256: " + h + ", roles: [admin]}\n",
		"token not hash":       "tokens:\n  - {name: a, sha256: my-secret-token, roles: [admin]}\n",
		"unknown role":         "tokens:\n  - {name: a, sha256: " + h + ", roles: [root]}\n",
		"node role from token": "tokens:\n  - {name: a, sha256: " + h + ", roles: [node]}\n",
		"no role":              "tokens:\n  - {name: a, sha256: " + h + "}\n",
		"producer no queues":   "tokens:\n  - {name: a, sha256: " + h + ", roles: [producer]}\n",
		"bad pattern":          "tokens:\n  - {name: a, sha256: " + h + ", roles: [worker], queues: ['orders.[']}\n",
		"not yaml":             "tokens: [\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseTokens([]byte(content)); err == nil {
				t.Fatalf("accepted:\n%s", content)
			}
		})
	}
	if tt, err := ParseTokens([]byte(tokensYAML())); err != nil || len(tt) != 4 {
		t.Fatalf("good file: %d tokens, %v", len(tt), err)
	}
	if tt, err := ParseTokens(nil); err != nil || len(tt) != 0 {
		t.Fatalf("empty file: %v", err)
	}
}

func TestVerifyStaticTokensAndReload(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "tokens.yaml", tokensYAML())
	a, _ := newAuthorizer(t, Config{TokensFile: f})
	p, err := a.Verify(producerToken)
	if err != nil || p.Name != "token:ingest" || !p.Has(RoleProducer) || p.Has(RoleWorker) {
		t.Fatalf("producer token: %+v, %v", p, err)
	}
	if !p.AllowsQueue("orders.eu") || !p.AllowsQueue("mail") || p.AllowsQueue("billing") || p.AllowsAllQueues() {
		t.Fatalf("producer queues wrong: %v", p.Queues)
	}
	for _, bad := range []string{"", "tok-nope", HashToken(producerToken)} {
		if _, err := a.Verify(bad); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("Verify(%q) = %v, want unauthenticated", bad, err)
		}
	}
	// Revoke the producer token on disk: refused from the next call on.
	writeFile(t, dir, "tokens.yaml", strings.Replace(tokensYAML(), HashToken(producerToken), HashToken("tok-new"), 1))
	if _, err := a.Verify(producerToken); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked token still accepted: %v", err)
	}
	if _, err := a.Verify("tok-new"); err != nil {
		t.Fatalf("new token refused: %v", err)
	}
	// A broken edit keeps the last good table.
	writeFile(t, dir, "tokens.yaml", "tokens: [")
	if _, err := a.Verify("tok-new"); err != nil {
		t.Fatalf("a broken tokens file dropped the good one: %v", err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	short := writeFile(t, dir, "short", "too short")
	for name, c := range map[string]Config{
		"missing tokens file": {TokensFile: filepath.Join(dir, "nope.yaml")},
		"short secret":        {JWT: JWTConfig{HS256SecretFile: short}},
		"bad public key":      {JWT: JWTConfig{RS256PublicKeyFile: short}},
		"bad node pattern":    {TokensFile: writeFile(t, dir, "t.yaml", tokensYAML()), NodeNames: []string{"node.["}},
		"negative rate":       {TokensFile: writeFile(t, dir, "t2.yaml", tokensYAML()), RateLimit: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if a, err := New(Config{}); a != nil || err != nil {
		t.Fatalf("zero config: %v %v, want auth off", a, err)
	}
}

func TestJWT(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("s", 40)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a, _ := newAuthorizer(t, Config{
		JWT: JWTConfig{
			HS256SecretFile:    writeFile(t, dir, "secret", secret+"\n"),
			RS256PublicKeyFile: writeFile(t, dir, "pub.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))),
			Issuer:             "raftq-test", Audience: "brokers",
		},
		Now: func() time.Time { return now },
	})
	claims := func(mut func(*Claims)) *Claims {
		c := &Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "svc-a", Issuer: "raftq-test", Audience: jwt.ClaimStrings{"brokers"},
				ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))},
			Roles: []string{"worker"}, Queues: []string{"orders.*"},
		}
		if mut != nil {
			mut(c)
		}
		return c
	}
	hs := func(c *Claims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rs := func(c *Claims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(rsaKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for name, tok := range map[string]string{"HS256": hs(claims(nil)), "RS256": rs(claims(nil))} {
		p, err := a.Verify(tok)
		if err != nil || p.Name != "jwt:svc-a" || !p.Has(RoleWorker) || !p.AllowsQueue("orders.x") || p.AllowsQueue("mail") {
			t.Fatalf("%s: %+v, %v", name, p, err)
		}
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	otherSecret, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte(strings.Repeat("x", 40)))
	// An RS256 public key used as an HS256 secret (the classic confusion).
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	bad := map[string]string{
		"alg none":         none,
		"other secret":     otherSecret,
		"key confusion":    confused,
		"expired":          hs(claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) })),
		"no exp":           hs(claims(func(c *Claims) { c.ExpiresAt = nil })),
		"not yet valid":    hs(claims(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })),
		"wrong issuer":     hs(claims(func(c *Claims) { c.Issuer = "someone" })),
		"wrong audience":   hs(claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"svcd"} })),
		"no subject":       hs(claims(func(c *Claims) { c.Subject = "" })),
		"unknown role":     hs(claims(func(c *Claims) { c.Roles = []string{"root"} })),
		"node role":        hs(claims(func(c *Claims) { c.Roles = []string{"node"} })),
		"worker no queues": hs(claims(func(c *Claims) { c.Queues = nil })),
		"tampered":         hs(claims(nil))[:40] + "x" + hs(claims(nil))[41:],
	}
	for name, tok := range bad {
		if p, err := a.Verify(tok); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: accepted as %+v (%v)", name, p, err)
		}
	}
}

func TestCheck(t *testing.T) {
	a, _ := newAuthorizer(t, Config{
		TokensFile: writeFile(t, t.TempDir(), "t.yaml", tokensYAML()),
		JobQueue: func(_ context.Context, id string) (string, bool, error) {
			if id == "j-broken" {
				return "", false, io.ErrUnexpectedEOF
			}
			q, ok := map[string]string{"j-orders": "orders.eu", "j-billing": "billing"}[id]
			return q, ok, nil
		},
	})
	prod, _ := a.Verify(producerToken)
	admin, _ := a.Verify(adminToken)
	ctx := context.Background()
	cases := []struct {
		p    *Principal
		acc  Access
		want error
	}{
		{prod, Access{Roles: RoleProducer, Queues: []string{"orders.eu", "mail"}}, nil},
		{prod, Access{Roles: RoleWorker, Queues: []string{"orders.eu"}}, ErrPermissionDenied},
		{prod, Access{Roles: RoleProducer, Queues: []string{"orders.eu", "billing"}}, ErrPermissionDenied},
		{prod, Access{Roles: RoleProducer, AllQueues: true}, ErrPermissionDenied},
		{prod, Access{Roles: RoleProducer, Jobs: []string{"j-orders", "j-unknown"}}, nil},
		{prod, Access{Roles: RoleProducer, Jobs: []string{"j-billing"}}, ErrPermissionDenied},
		{prod, Access{Roles: RoleProducer, Jobs: []string{"j-broken"}}, io.ErrUnexpectedEOF},
		{admin, Access{Roles: RoleWorker, Queues: []string{"anything"}, AllQueues: true, Jobs: []string{"j-billing"}}, nil},
		{nil, Access{}, ErrUnauthenticated},
	}
	for i, c := range cases {
		if err := a.Check(ctx, c.p, c.acc); !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("case %d: %v, want %v", i, err, c.want)
		}
	}
}

// fakeBroker counts the calls that reach it: a refused call must not.
type fakeBroker struct {
	raftqv1.UnimplementedBrokerServer
	raftqv1.UnimplementedAdminServer
	calls atomic.Int64
}

func (f *fakeBroker) Enqueue(context.Context, *raftqv1.EnqueueRequest) (*raftqv1.EnqueueResponse, error) {
	f.calls.Add(1)
	return &raftqv1.EnqueueResponse{}, nil
}

func (f *fakeBroker) Fetch(context.Context, *raftqv1.FetchRequest) (*raftqv1.FetchResponse, error) {
	f.calls.Add(1)
	return &raftqv1.FetchResponse{}, nil
}

func (f *fakeBroker) Ack(context.Context, *raftqv1.AckRequest) (*raftqv1.AckResponse, error) {
	f.calls.Add(1)
	return &raftqv1.AckResponse{}, nil
}

func (f *fakeBroker) PauseQueue(context.Context, *raftqv1.PauseQueueRequest) (*raftqv1.PauseQueueResponse, error) {
	f.calls.Add(1)
	return &raftqv1.PauseQueueResponse{}, nil
}

// TestGRPCEnforcement runs a real gRPC server over TLS with the auth
// options and checks every kind of refusal, and that refused calls never
// reach the service.
func TestGRPCEnforcement(t *testing.T) {
	pki, err := certgen.NewDev(t.TempDir(), "test CA", []string{"n1", "n2"})
	if err != nil {
		t.Fatal(err)
	}
	a, logs := newAuthorizer(t, Config{
		TokensFile: writeFile(t, t.TempDir(), "t.yaml", tokensYAML()),
		NodeNames:  []string{"node.*"},
		RateLimit:  1, RateBurst: 10,
		JobQueue: func(context.Context, string) (string, bool, error) { return "billing", true, nil },
	})
	srcFor := func(name string) *tlsutil.Source {
		f := tlsutil.Files{CA: pki.CAFile()}
		if name != "" {
			f.Cert, f.Key = pki.CertFile(name), pki.KeyFile(name)
		}
		s, err := tlsutil.Load(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	fake := &fakeBroker{}
	srv := grpc.NewServer(append(a.ServerOptions(BrokerRules), grpc.Creds(srcFor("node.n1").ServerCredentials(tls.VerifyClientCertIfGiven)))...)
	raftqv1.RegisterBrokerServer(srv, fake)
	raftqv1.RegisterAdminServer(srv, fake)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	dial := func(cert, token string) *grpc.ClientConn {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(srcFor(cert).ClientCredentials())}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(bearer.Credentials{Token: token}))
		}
		cc, err := grpc.NewClient(ln.Addr().String(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	enqueue := func(cc *grpc.ClientConn, queue string) error {
		_, err := raftqv1.NewBrokerClient(cc).Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: queue, Type: "t"}}})
		return err
	}
	anon := dial("", "")
	if _, err := healthpb.NewHealthClient(anon).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health needs no token: %v", err)
	}
	expect := func(what string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Fatalf("%s: %v, want %s", what, err, want)
		}
	}
	expect("no token", enqueue(anon, "orders.eu"), codes.Unauthenticated)
	expect("client cert that is not a node, no token", enqueue(dial("client", ""), "orders.eu"), codes.Unauthenticated)
	// Named like a node but without the node URI only node certificates
	// carry: not a node either (a node would be PermissionDenied here).
	if err := pki.Write("lookalike", certgen.LocalOptions("node.n9", false, true)); err != nil {
		t.Fatal(err)
	}
	expect("node-like name without the node URI, no token", enqueue(dial("lookalike", ""), "orders.eu"), codes.Unauthenticated)
	expect("bad token", enqueue(dial("", "tok-wrong"), "orders.eu"), codes.Unauthenticated)
	producer := dial("", producerToken)
	expect("producer, own queue", enqueue(producer, "orders.eu"), codes.OK)
	expect("producer, other queue", enqueue(producer, "billing"), codes.PermissionDenied)
	_, err = raftqv1.NewBrokerClient(producer).Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{"orders.eu"}})
	expect("producer fetching", err, codes.PermissionDenied)
	worker := dial("", workerToken)
	// queue_weights names queues on its own: they are checked like queues.
	_, err = raftqv1.NewBrokerClient(worker).Fetch(ctx, &raftqv1.FetchRequest{QueueWeights: map[string]int32{"orders.eu": 3, "billing": 1}})
	expect("worker fetching another queue by weight", err, codes.PermissionDenied)
	_, err = raftqv1.NewBrokerClient(worker).Ack(ctx, &raftqv1.AckRequest{JobId: "j1", LeaseToken: 1})
	expect("worker acking a job of another queue", err, codes.PermissionDenied)
	_, err = raftqv1.NewAdminClient(worker).PauseQueue(ctx, &raftqv1.PauseQueueRequest{Queue: "orders.eu"})
	expect("worker pausing", err, codes.PermissionDenied)
	node := dial("node.n2", "")
	_, err = raftqv1.NewAdminClient(node).PauseQueue(ctx, &raftqv1.PauseQueueRequest{Queue: "orders.eu"})
	expect("node pausing (nodes may only join)", err, codes.PermissionDenied)
	if n := fake.calls.Load(); n != 1 {
		t.Fatalf("%d calls reached the service, want only the one allowed", n)
	}
	admin := dial("", adminToken)
	_, err = raftqv1.NewAdminClient(admin).PauseQueue(ctx, &raftqv1.PauseQueueRequest{Queue: "orders.eu"})
	expect("admin pausing", err, codes.OK)
	if !strings.Contains(logs.String(), `"msg":"audit","principal":"token:ops","method":"/raftq.v1.Admin/PauseQueue","outcome":"ok","code":"OK"`) ||
		!strings.Contains(logs.String(), `"msg":"audit","principal":"token:runner","method":"/raftq.v1.Admin/PauseQueue","outcome":"refused","code":"PermissionDenied"`) ||
		!strings.Contains(logs.String(), `"msg":"audit","principal":"(unauthenticated)","method":"/raftq.v1.Broker/Enqueue","outcome":"refused","code":"Unauthenticated"`) {
		t.Fatalf("audit lines missing:\n%s", logs.String())
	}
	// Rate limit: burst 10 per principal, then ResourceExhausted; other
	// principals are not affected.
	limited := dial("", allToken)
	var got codes.Code
	for i := 0; i < 30 && got != codes.ResourceExhausted; i++ {
		got = status.Code(enqueue(limited, "x"))
	}
	if got != codes.ResourceExhausted {
		t.Fatalf("rate limit never hit: %s", got)
	}
	expect("another principal while one is limited", enqueue(producer, "mail"), codes.OK)

	// Plaintext to the TLS port fails.
	plain, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer.Credentials{Token: adminToken, Insecure: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	if err := enqueueCtx(pctx, plain); status.Code(err) == codes.OK {
		t.Fatal("a plaintext call to a TLS port succeeded")
	}
}

func enqueueCtx(ctx context.Context, cc *grpc.ClientConn) error {
	_, err := raftqv1.NewBrokerClient(cc).Enqueue(ctx, &raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "orders.eu", Type: "t"}}})
	return err
}

func TestTokenNeedsTransportSecurity(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	defer srv.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer.Credentials{Token: "secret"}))
	if err == nil {
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	}
	if err == nil {
		t.Fatal("a bearer token was sent over plaintext")
	}
}

func TestHTTP(t *testing.T) {
	a, _ := newAuthorizer(t, Config{TokensFile: writeFile(t, t.TempDir(), "t.yaml", tokensYAML())})
	req := func(h string) *http.Request {
		r, _ := http.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		return r
	}
	basic := req("")
	basic.SetBasicAuth("anyone", adminToken)
	for name, c := range map[string]struct {
		r    *http.Request
		want int
	}{
		"bearer":      {req("Bearer " + adminToken), 0},
		"basic":       {basic, 0},
		"none":        {req(""), http.StatusUnauthorized},
		"wrong":       {req("Bearer nope"), http.StatusUnauthorized},
		"odd scheme":  {req("Token " + adminToken), http.StatusUnauthorized},
		"bare bearer": {req("Bearer "), http.StatusUnauthorized},
	} {
		p, err := a.AuthenticateHTTP(c.r)
		if c.want == 0 && (err != nil || p.Name != "token:ops") || c.want != 0 && HTTPStatus(err) != c.want {
			t.Errorf("%s: %v %v", name, p, err)
		}
	}
	if HTTPStatus(denied("x")) != 403 || HTTPStatus(rateLimited("x")) != 429 || HTTPStatus(io.EOF) != 500 {
		t.Fatal("HTTPStatus mapping")
	}
}

func writeAtomic(path, content string) error {
	return certgen.WriteAtomic(path, []byte(content), 0o600)
}
