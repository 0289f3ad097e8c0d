package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/tlsutil"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/server"
)

// TestRefusalsAudited: svcd writes a refused gRPC call and a refused HTTP
// request to its audit sink, one line each, naming what was refused.
func TestRefusalsAudited(t *testing.T) {
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("tokens:\n  - {name: ops, sha256: "+auth.HashToken("a")+", roles: [admin]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auditFile := filepath.Join(dir, "audit.log")
	sink, err := auth.OpenAuditLog(auditFile, auth.AuditLimits{})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	s := startServer(t, server.Config{
		ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: "sqlite", DataDir: filepath.Join(dir, "db"),
		ReadyInterval: 50 * time.Millisecond,
		TLS:           tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile("svcd"), Key: pki.KeyFile("svcd")},
		Auth:          auth.Config{TokensFile: tokens, Audit: sink},
		Brokers:       server.BrokerCheck{Disabled: true}, // refused before any result is looked at
	})
	tlsCfg, err := client.LoadTLS(pki.CAFile(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := results.Dial(s.GRPCAddr(), results.WithTLS(tlsCfg), results.WithToken("guessed"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.GetResult(ctx, "j1"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad token: %v", err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg.Clone()}}
	resp, err := hc.Get("https://" + s.HTTPAddr() + "/v1/results/j1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	data, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 ||
		!strings.Contains(lines[0], `"msg":"audit","principal":"(unauthenticated)","method":"/raftq.v1.Results/GetResult","outcome":"refused"`) ||
		!strings.Contains(lines[1], `"msg":"audit","principal":"(unauthenticated)","http":"GET ","path":"/v1/results/j1","outcome":"refused","status":"401"`) {
		t.Fatalf("want one refusal line per call:\n%s", data)
	}
}
