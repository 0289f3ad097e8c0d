// Command raftq-certs writes a development PKI and bearer tokens for a
// local raftq with TLS and auth on (`make certs`, `RAFTQ_TLS=1 make run`):
//
//	raftq-certs --dir tmp/certs --nodes n1,n2=b2.example/10.0.0.2,n3 [--hosts h1,10.0.0.5] [--new-ca]
//
// Into --dir it writes ca.crt (a CA made once and reused, so re-running
// renews the other certificates without changing what everyone trusts;
// --new-ca replaces it) and the CA's key apart in ca/ca.key (directory
// 0700: hand a node the files in --dir, never ca/). Then, for each node,
// node.<id>.crt/.key: CN node.<id> (brokers match it with
// --auth-node-names 'node.*'), server and client use, and the URI SAN
// raftq://node/<id> that only node certificates carry (the Raft
// transport accepts nothing else), valid for the node's own hosts (after
// '=', separated by '/') besides loopback and --hosts. Then svcd.crt/.key,
// etcd.crt/.key (raftq-etcd's server certificate), client.crt/.key
// (the SDK's, client use) and admin.crt/.key (the operator's brokerctl
// calls to etcd, client use), and, once, three random tokens: tokens/admin.token,
// tokens/producer.token and tokens/worker.token (queues "*"), with their
// SHA-256 hashes in tokens.yaml (--auth-tokens-file). Every certificate
// is valid for localhost, 127.0.0.1, ::1 and --hosts. Keys and tokens are
// written 0600, each file through a rename, so running brokers pick the
// new certificates up at their next handshake.
//
// This is for development and tests. In production, use your own CA and
// keep the CA key off the brokers.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/nodeid"
	"github.com/raftq/raftq/internal/version"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "raftq-certs")
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("raftq-certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "tmp/certs", "directory to write into")
	nodes := fs.String("nodes", "n1,n2,n3", "node ids, comma-separated: one certificate node.<id> each; id=host/host adds that node's own host names or IPs")
	hosts := fs.String("hosts", "", "extra host names or IPs every certificate is valid for, comma-separated")
	newCA := fs.Bool("new-ca", false, "make a new CA even if --dir has one")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "raftq-certs: unexpected %q\n", fs.Args())
		return 2
	}
	ns, err := parseNodes(*nodes)
	if err != nil {
		fmt.Fprintln(stderr, "raftq-certs:", err)
		return 2
	}
	var d *certgen.Dev
	if *newCA || !certgen.HasCA(*dir) {
		d, err = certgen.CreateDev(*dir, "raftq development CA")
	} else {
		d, err = certgen.LoadDev(*dir)
	}
	if err == nil {
		err = d.IssueDefaults(ns, split(*hosts))
	}
	if err == nil {
		err = writeTokens(*dir)
	}
	if err != nil {
		fmt.Fprintln(stderr, "raftq-certs:", err)
		return 1
	}
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	fmt.Fprintf(stdout, "CA %s (key %s); certificates for %s, svcd, etcd, client and admin; tokens in %s\n",
		d.CAFile(), d.CAKeyFile(), strings.Join(ids, ", "), filepath.Join(*dir, "tokens"))
	return 0
}

// writeTokens makes the three development tokens once and writes their
// hashes to tokens.yaml (always, so it matches the token files).
func writeTokens(dir string) error {
	td := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(td, 0o700); err != nil {
		return err
	}
	roles := []struct{ name, roles, queues string }{
		{"admin", "[admin]", "[]"},
		{"producer", "[producer]", `["*"]`},
		{"worker", "[worker]", `["*"]`},
	}
	var b strings.Builder
	b.WriteString("# Development tokens (raftq-certs): the SHA-256 of tokens/<name>.token.\ntokens:\n")
	for _, r := range roles {
		p := filepath.Join(td, r.name+".token")
		tok, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			raw := make([]byte, 32)
			if _, err := rand.Read(raw); err != nil {
				return err
			}
			tok = []byte("rq_" + hex.EncodeToString(raw))
			err = certgen.WriteAtomic(p, tok, 0o600)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "  - name: dev-%s\n    sha256: %s\n    roles: %s\n    queues: %s\n", r.name, auth.HashToken(strings.TrimSpace(string(tok))), r.roles, r.queues)
	}
	return certgen.WriteAtomic(filepath.Join(dir, "tokens.yaml"), []byte(b.String()), 0o600)
}

// parseNodes reads --nodes: id or id=host/host, comma-separated.
func parseNodes(s string) ([]certgen.Node, error) {
	var out []certgen.Node
	seen := map[string]bool{}
	for _, p := range split(s) {
		id, hosts, _ := strings.Cut(p, "=")
		if !nodeid.ValidID(id) {
			return nil, fmt.Errorf("node id %q must not be empty nor contain '/', ' ', '=', ',', '?', '#' or '%%'", id)
		}
		if seen[id] {
			return nil, fmt.Errorf("node id %q given twice", id)
		}
		seen[id] = true
		n := certgen.Node{ID: id}
		for _, h := range strings.Split(hosts, "/") {
			if h = strings.TrimSpace(h); h != "" {
				n.Hosts = append(n.Hosts, h)
			}
		}
		out = append(out, n)
	}
	return out, nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
