package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/tlsutil"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/server"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// TestTLSAndAuth: svcd with TLS and auth: no token is Unauthenticated, a
// wrong role or queue is PermissionDenied and writes nothing (a worker
// cannot overwrite another queue's result by claiming its own queue),
// both APIs speak only TLS, probes stay open, refusals are audited.
func TestTLSAndAuth(t *testing.T) {
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf(`tokens:
  - {name: runner, sha256: %s, roles: [worker], queues: ["orders.*"]}
  - {name: reader, sha256: %s, roles: [producer], queues: ["orders.*"]}
  - {name: ops, sha256: %s, roles: [admin]}
`, auth.HashToken("w"), auth.HashToken("p"), auth.HashToken("a"))), 0o600); err != nil {
		t.Fatal(err)
	}
	auditFile := filepath.Join(dir, "audit.log")
	audit, err := auth.OpenAuditLog(auditFile, auth.AuditLimits{})
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	cfg := server.Config{
		ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: "sqlite", DataDir: filepath.Join(dir, "db"),
		ReadyInterval: 50 * time.Millisecond,
		TLS:           tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile("svcd"), Key: pki.KeyFile("svcd")},
		Auth:          auth.Config{TokensFile: tokens, Audit: audit},
		// svcd's own checks; the brokers' are in svcd/brokercheck.
		Brokers: server.BrokerCheck{Disabled: true},
	}
	s := svcdtest.StartWith(t, cfg)
	tlsCfg, err := client.LoadTLS(pki.CAFile(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	as := func(token string) *results.Client {
		opts := []grpc.DialOption{results.WithTLS(tlsCfg)}
		if token != "" {
			opts = append(opts, results.WithToken(token))
		}
		c, err := results.Dial(s.GRPCAddr(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := func(job, queue string, token uint64) results.Result {
		return results.Result{JobID: job, Queue: queue, Type: "t", LeaseToken: token, Status: results.StatusSucceeded, Output: []byte("out")}
	}
	code := func(err error) codes.Code { return status.Code(err) }

	worker, producer, admin := as("w"), as("p"), as("a")
	if _, err := as("").StoreResult(ctx, res("j1", "orders.eu", 1)); code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
	if _, err := worker.StoreResult(ctx, res("j1", "orders.eu", 1)); err != nil {
		t.Fatalf("worker storing for its queue: %v", err)
	}
	if _, err := admin.StoreResult(ctx, res("j2", "billing", 1)); err != nil {
		t.Fatalf("admin storing: %v", err)
	}
	assertRows(t, s, 2, 2)
	for name, err := range map[string]error{
		"worker storing for another queue": func() error { _, err := worker.StoreResult(ctx, res("j3", "billing", 1)); return err }(),
		"worker overwriting another queue's result by claiming its own": func() error {
			_, err := worker.StoreResult(ctx, res("j2", "orders.eu", 5))
			return err
		}(),
		"producer storing (worker role needed)":     func() error { _, err := producer.StoreResult(ctx, res("j4", "orders.eu", 1)); return err }(),
		"producer reading another queue's result":   func() error { _, err := producer.GetResult(ctx, "j2"); return err }(),
		"producer reading another queue's attempts": func() error { _, err := producer.Attempts(ctx, "j2"); return err }(),
		"producer listing every queue":              func() error { _, err := producer.ListResults(ctx, results.ListOptions{}); return err }(),
	} {
		if code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", name, err)
		}
	}
	assertRows(t, s, 2, 2)
	if r, err := admin.GetResult(ctx, "j2"); err != nil || r.LeaseToken != 1 || r.Queue != "billing" {
		t.Fatalf("the refused overwrite changed j2: %+v %v", r, err)
	}
	if r, err := producer.GetResult(ctx, "j1"); err != nil || string(r.Output) != "out" {
		t.Fatalf("producer reading its queue: %v", err)
	}
	if p, err := producer.ListResults(ctx, results.ListOptions{Queue: "orders.eu"}); err != nil || len(p.Results) != 1 {
		t.Fatalf("producer listing its queue: %v %v", p, err)
	}
	if _, err := producer.GetResult(ctx, "nope"); !errors.Is(err, results.ErrNotFound) {
		t.Fatalf("unknown job: %v, want not found", err)
	}

	// Reflection: admins only.
	for tok, want := range map[string]codes.Code{"a": codes.OK, "p": codes.PermissionDenied} {
		cc, err := grpc.NewClient(s.GRPCAddr(), results.WithTLS(tlsCfg), results.WithToken(tok))
		if err != nil {
			t.Fatal(err)
		}
		names, err := listServices(ctx, cc)
		cc.Close()
		if code(err) != want || (want == codes.OK && !slices.Contains(names, "raftq.v1.Results")) {
			t.Errorf("reflection with token %q: %v %v, want %v", tok, names, err, want)
		}
	}

	// HTTP: TLS only, tokens required, probes open, /metrics for admins.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg.Clone()}}
	get := func(path, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+s.HTTPAddr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200}, {"/v1/results/j1", "", 401}, {"/v1/results/j1", "p", 200},
		{"/v1/results/j2", "p", 403}, {"/metrics", "w", 403}, {"/metrics", "a", 200},
	} {
		if got := get(c.path, c.token); got != c.want {
			t.Errorf("GET %s with %q: %d, want %d", c.path, c.token, got, c.want)
		}
	}
	// Refusals, gRPC and HTTP, are audit lines in svcd's own sink.
	data, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"msg":"audit","principal":"(unauthenticated)","method":"/raftq.v1.Results/StoreResult","outcome":"refused"`,
		`"msg":"audit","principal":"(unauthenticated)","http":"GET ","path":"/v1/results/j1","outcome":"refused","status":"401"`,
		`"msg":"audit","principal":"token:runner","http":"GET ","path":"/metrics","outcome":"refused","status":"403"`,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("no audit line holds %s:\n%s", want, data)
		}
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plaintext HTTP answered 200")
		}
	}
	plain, err := results.Dial(s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	defer pcancel()
	if _, err := plain.GetResult(pctx, "j1"); err == nil || strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("plaintext gRPC: %v", err)
	}
}

// TestAuthNeedsTLS: auth without TLS is refused at start.
func TestAuthNeedsTLS(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	os.WriteFile(tokens, []byte("tokens: []\n"), 0o600)
	_, err := server.New(context.Background(), server.Config{ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: "sqlite",
		DataDir: filepath.Join(dir, "db"), Auth: auth.Config{TokensFile: tokens}})
	if err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Fatalf("auth without TLS: %v", err)
	}
}

// TestCrossSiteWriteRefused: a page on another site can make a browser
// POST a "text/plain" body to svcd without a CORS preflight; svcd refuses
// such writes 403 whatever the credentials (here auth is off, the
// weakest case): a foreign Origin, "Origin: null", Sec-Fetch-Site
// cross-site or same-site. Nothing is stored. The same body without
// browser headers (curl, SDKs), or from svcd's own origin, is stored.
func TestCrossSiteWriteRefused(t *testing.T) {
	s := svcdtest.StartWith(t, server.Config{ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: "sqlite", DataDir: t.TempDir(),
		Brokers: server.BrokerCheck{Disabled: true}})
	post := func(job string, hdr ...string) int {
		t.Helper()
		body := `{"job_id":"` + job + `","queue":"q","lease_token":1,"status":"succeeded"}`
		req, _ := http.NewRequest("POST", "http://"+s.HTTPAddr()+"/v1/results", strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusForbidden && !strings.Contains(string(b), "cross-site") {
			t.Errorf("403 without the reason: %s", b)
		}
		return resp.StatusCode
	}
	ctx := context.Background()
	for i, hdr := range [][]string{
		{"Origin", "http://evil.example"},
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://other." + s.HTTPAddr()},
	} {
		job := fmt.Sprintf("x%d", i)
		if code := post(job, hdr...); code != http.StatusForbidden {
			t.Errorf("cross-site POST %v: %d, want 403", hdr, code)
		}
		if _, err := s.Store().GetResult(ctx, job); err == nil {
			t.Errorf("cross-site POST %v stored a result", hdr)
		}
	}
	for i, hdr := range [][]string{nil, {"Origin", "http://" + s.HTTPAddr()}, {"Sec-Fetch-Site", "same-origin"}} {
		job := fmt.Sprintf("ok%d", i)
		if code := post(job, hdr...); code != http.StatusOK {
			t.Errorf("POST %v: %d, want 200", hdr, code)
		}
		if _, err := s.Store().GetResult(ctx, job); err != nil {
			t.Errorf("POST %v: %v", hdr, err)
		}
	}
}
