package admin_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/testcluster"
)

// TestDashboardSecure runs the dashboard of a cluster with TLS and tokens
// on: pages need the admin token (Basic, as a browser sends it); the
// health probes still see every node (over the node's certificate) and a
// killed one as DOWN; a same-origin form post with Basic credentials
// acts, and the same post from another site is refused and changes
// nothing.
func TestDashboardSecure(t *testing.T) {
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", []string{"n1", "n2", "n3"})
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tokens:\n  - {name: ops, sha256: "+auth.HashToken("admin-token")+", roles: [admin]}\n  - {name: w, sha256: "+auth.HashToken("worker-token")+", roles: [worker], queues: [\"*\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secure := testcluster.Secure(pki, tokens)
	c := testcluster.New(t, 3, secure, testcluster.Admin)
	caPEM, err := os.ReadFile(pki.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c.WaitLeader(10 * time.Second)
	host := c.AdminAddr(follower(c))
	base := "https://" + host
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:admin-token"))
	do := func(method, path, authz string, form url.Values, hdr ...string) page {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, base+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return page{resp.StatusCode, resp.Header.Get("Location"), string(b)}
	}

	if p := do("GET", "/ui/", "", nil); p.status != 401 {
		t.Fatalf("overview without a token: %d", p.status)
	}
	if p := do("GET", "/ui/", "Basic "+base64.StdEncoding.EncodeToString([]byte("w:worker-token")), nil); p.status != 403 {
		t.Fatalf("overview with a worker token: %d", p.status)
	}
	if p := do("GET", "/ui/static/live.js", "", nil); p.status != 200 {
		t.Fatalf("static file without a token: %d", p.status)
	}
	// Every node up, each with the Raft state it reported (the probe was
	// authorized as a node, not merely answered).
	deadline := time.Now().Add(20 * time.Second)
	for {
		p := do("GET", "/ui/", basic, nil)
		st := nodeStatus(p.body)
		h := do("GET", "/v1/cluster/health", "Bearer admin-token", nil)
		h.body = strings.Join(strings.Fields(h.body), "")
		if p.status == 200 && len(st) == 3 && st["n1"] == "up" && st["n2"] == "up" && st["n3"] == "up" &&
			strings.Count(h.body, `"state":"Follower"`) == 2 && strings.Count(h.body, `"state":"Leader"`) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("secure overview: %d %v\n%s", p.status, st, h.body)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// A queue to act on (pausing through the JSON API creates it).
	if p := do("POST", "/v1/queues/billing/pause", "Bearer admin-token", nil); p.status != 200 {
		t.Fatalf("pause via API: %d %s", p.status, p.body)
	}
	paused := func() bool {
		t.Helper()
		p := do("GET", "/v1/queues/billing", "Bearer admin-token", nil)
		return strings.Contains(strings.Join(strings.Fields(p.body), ""), `"paused":true`)
	}
	// Cross-site form post with the browser's Basic credentials: refused.
	if p := do("POST", "/ui/queues/billing/resume", basic, url.Values{}, "Origin", "https://evil.example"); p.status != 403 {
		t.Fatalf("cross-site resume: %d %s", p.status, p.body)
	}
	if !paused() {
		t.Fatal("cross-site resume resumed the queue")
	}
	// Same origin: done.
	if p := do("POST", "/ui/queues/billing/resume", basic, url.Values{}, "Origin", base, "Sec-Fetch-Site", "same-origin"); p.status != 303 {
		t.Fatalf("same-origin resume: %d %s", p.status, p.body)
	}
	if paused() {
		t.Fatal("same-origin resume did not resume")
	}

	// A killed node shows as DOWN.
	var victim string
	for _, n := range c.Up() {
		if c.AdminAddr(n) != host {
			victim = n.ID()
			break
		}
	}
	c.Kill(victim)
	deadline = time.Now().Add(20 * time.Second)
	for {
		p := do("GET", "/ui/", basic, nil)
		if nodeStatus(p.body)[victim] == "down" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed %s not shown down:\n%s", victim, p.body)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
