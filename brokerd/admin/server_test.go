package admin_test

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd/admin"
	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/auth"
)

// fakeNode is a node whose gRPC API is nowhere: every call that needs it
// can only time out or fail.
type fakeNode struct {
	f     *fsm.FSM
	ready error
}

func (n *fakeNode) ID() string                              { return "fake" }
func (n *fakeNode) GRPCAddr() string                        { return "127.0.0.1:1" }
func (n *fakeNode) FSM() *fsm.FSM                           { return n.f }
func (n *fakeNode) QueueGroups(string) []uint32             { return nil }
func (n *fakeNode) Ready() error                            { return n.ready }
func (n *fakeNode) RaftStats() map[string]string            { return map[string]string{"state": "Follower"} }
func (n *fakeNode) WriteSnapshot(io.Writer) (uint64, error) { return 0, errors.New("no") }

func start(t *testing.T, cfg admin.Config) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s, err := admin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return "http://" + s.Addr()
}

// TestRequestTimeout: a request whose deadline passes while it waits on the
// node answers 504 TIMEOUT in the error shape.
func TestRequestTimeout(t *testing.T) {
	u := start(t, admin.Config{Node: &fakeNode{f: fsm.New()}, RequestTimeout: time.Nanosecond})
	want(t, call(t, "GET", u+"/v1/queues", ""), http.StatusGatewayTimeout, "TIMEOUT")
	want(t, call(t, "POST", u+"/v1/queues/q/pause", ""), http.StatusGatewayTimeout, "TIMEOUT")
}

// TestNotReady: /readyz says why a node is not ready; /healthz still
// answers (the process is alive).
func TestNotReady(t *testing.T) {
	u := start(t, admin.Config{Node: &fakeNode{f: fsm.New(), ready: errors.New("no leader known")}})
	r := call(t, "GET", u+"/readyz", "")
	want(t, r, http.StatusServiceUnavailable, "NOT_READY")
	if msg := r.body["error"].(map[string]any)["message"]; msg != "no leader known" {
		t.Fatalf("readyz message %v", msg)
	}
	want(t, call(t, "GET", u+"/healthz", ""), http.StatusOK, "")
}

// TestSmallBodyLimit: the JSON body limit is configurable and refused
// bodies change nothing (the node is never called).
func TestSmallBodyLimit(t *testing.T) {
	u := start(t, admin.Config{Node: &fakeNode{f: fsm.New()}, MaxBodyBytes: 16})
	want(t, call(t, "POST", u+"/v1/queues/q/dead/redrive", `{"job_ids": ["0123456789abcdef"]}`), http.StatusRequestEntityTooLarge, "TOO_LARGE")
}

// TestCrossSiteFormRefused: the dashboard's form posts refuse other
// origins.
func TestCrossSiteFormRefused(t *testing.T) {
	u := start(t, admin.Config{Node: &fakeNode{f: fsm.New()}})
	r := call(t, "POST", u+"/ui/queues/q/dead/redrive", "", "Origin", "http://evil.example", "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusForbidden {
		t.Fatalf("cross-site post: %s", r)
	}
}

// TestOpenAPIServed: the description in the repo is what the server
// serves, and it names every route.
func TestOpenAPIServed(t *testing.T) {
	u := start(t, admin.Config{Node: &fakeNode{f: fsm.New()}})
	r := call(t, "GET", u+"/openapi.yaml", "")
	if r.status != 200 || len(r.raw) < 1000 {
		t.Fatalf("openapi: %d, %d bytes", r.status, len(r.raw))
	}
	for _, path := range admin.Routes() {
		if !containsLine(string(r.raw), "  "+path+":") {
			t.Errorf("openapi.yaml does not describe %s", path)
		}
	}
}

// TestProfilerAndMetricsServed: /debug/pprof and /metrics answer without
// touching the node.
func TestProfilerAndMetricsServed(t *testing.T) {
	u := start(t, admin.Config{Node: &fakeNode{f: fsm.New()}})
	if r := call(t, "GET", u+"/debug/pprof/", ""); r.status != 200 || !strings.Contains(string(r.raw), "goroutine") {
		t.Fatalf("pprof index: %d", r.status)
	}
	if r := call(t, "GET", u+"/debug/pprof/goroutine?debug=1", ""); r.status != 200 {
		t.Fatalf("goroutine profile: %d", r.status)
	}
	call(t, "GET", u+"/healthz", "")
	r := call(t, "GET", u+"/metrics", "")
	if r.status != 200 || !strings.Contains(string(r.raw), `raftq_admin_http_requests_total{code="200",method="GET",route="/healthz"} 1`) {
		t.Fatalf("metrics: %d\n%s", r.status, r.raw)
	}
}

// TestCrossSiteWritesRefused: with auth on, a write carrying Basic
// credentials (what a browser resends on its own) is refused 403 when
// another site made it: "Origin: null" (a sandboxed frame or file: page)
// counts as cross-site, as do a foreign Origin and Sec-Fetch-Site
// cross-site; the same write from the dashboard's own origin, or with a
// bearer token and no browser headers, reaches the handler (here: a node
// that is nowhere, so not 403). The dashboard's form post refuses
// "Origin: null" too, and with auth off every cross-site write is refused.
func TestCrossSiteWritesRefused(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tokens:\n  - {name: ops, sha256: "+auth.HashToken("admin-token")+", roles: [admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{TokensFile: tokens})
	if err != nil {
		t.Fatal(err)
	}
	u := start(t, admin.Config{Node: &fakeNode{f: fsm.New()}, Auth: a, RequestTimeout: 2 * time.Second})
	host := strings.TrimPrefix(u, "http://")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("me:admin-token"))
	for _, hdr := range [][]string{
		{"Origin", "null"},
		{"Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
	} {
		r := call(t, "POST", u+"/v1/queues/q/pause", "", "Authorization", basic, hdr[0], hdr[1], "Content-Type", "text/plain")
		if r.status != http.StatusForbidden || !strings.Contains(string(r.raw), "cross-site") {
			t.Errorf("Basic POST with %s: %s: want 403 cross-site", hdr, r)
		}
	}
	for _, hdr := range [][]string{
		{"Authorization", basic, "Origin", "http://" + host},
		{"Authorization", basic, "Sec-Fetch-Site", "same-origin"},
		{"Authorization", "Bearer admin-token"},
	} {
		if r := call(t, "POST", u+"/v1/queues/q/pause", "", hdr...); r.status == http.StatusForbidden || r.status == http.StatusUnauthorized {
			t.Errorf("same-origin POST %s: %s", hdr, r)
		}
	}
	r := call(t, "POST", u+"/ui/queues/q/dead/redrive", "", "Authorization", basic, "Origin", "null", "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusForbidden {
		t.Fatalf("form post with Origin: null: %s", r)
	}

	// Auth off (plain make run): any page could pause a loopback broker's
	// queue with a text/plain POST that needs no preflight.
	open := start(t, admin.Config{Node: &fakeNode{f: fsm.New()}, RequestTimeout: 2 * time.Second})
	for _, hdr := range [][]string{{"Origin", "null"}, {"Origin", "http://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		if r := call(t, "POST", open+"/v1/queues/q/pause", "", hdr[0], hdr[1], "Content-Type", "text/plain"); r.status != http.StatusForbidden {
			t.Errorf("auth off, POST with %s: %s: want 403", hdr, r)
		}
	}
}
