// Command raftq-certs writes a development PKI and bearer tokens for a
// local raftq with TLS and auth on (`make certs`, `RAFTQ_TLS=1 make run`):
//
//	raftq-certs --dir tmp/certs --nodes n1,n2,n3 [--hosts h1,10.0.0.5] [--new-ca]
//
// Into --dir it writes ca.crt and ca.key (a CA made once and reused, so
// re-running renews the other certificates without changing what everyone
// trusts; --new-ca replaces it), node.<id>.crt/.key for each node (CN
// node.<id>, server and client use: brokers match it with
// --auth-node-names 'node.*'), svcd.crt/.key, client.crt/.key (client
// use), and, once, three random tokens: tokens/admin.token,
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
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("raftq-certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "tmp/certs", "directory to write into")
	nodes := fs.String("nodes", "n1,n2,n3", "node ids, comma-separated: one certificate node.<id> each")
	hosts := fs.String("hosts", "", "extra host names or IPs every certificate is valid for, comma-separated")
	newCA := fs.Bool("new-ca", false, "make a new CA even if --dir has one")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "raftq-certs: unexpected %q\n", fs.Args())
		return 2
	}
	ids, extra := split(*nodes), split(*hosts)
	for _, id := range ids {
		if strings.ContainsAny(id, "/ =") {
			fmt.Fprintf(stderr, "raftq-certs: node id %q must not contain '/', ' ' or '='\n", id)
			return 2
		}
	}
	var d *certgen.Dev
	var err error
	_, statErr := os.Stat(filepath.Join(*dir, "ca.key"))
	if *newCA || errors.Is(statErr, os.ErrNotExist) {
		d, err = certgen.NewDev(*dir, "raftq development CA", ids, extra...)
	} else {
		d, err = certgen.OpenDev(*dir, ids, extra...)
	}
	if err == nil {
		err = writeTokens(*dir)
	}
	if err != nil {
		fmt.Fprintln(stderr, "raftq-certs:", err)
		return 1
	}
	fmt.Fprintf(stdout, "CA %s; certificates for %s, svcd and client; tokens in %s\n",
		d.CAFile(), strings.Join(ids, ", "), filepath.Join(*dir, "tokens"))
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

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
