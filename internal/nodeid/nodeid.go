// Package nodeid is how a certificate says "I am raftq node <id>": a URI
// subject alternative name raftq://node/<id>. raftq-certs puts it in node
// certificates only (never in client, svcd or etcd certificates), so it
// is the marker the Raft transport requires before it lets a peer speak
// Raft, and the id it binds the certificate to (the Raft server id).
// Operators with their own CA add the same URI SAN to node certificates.
package nodeid

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
)

// Scheme and Host are the fixed parts of a node URI.
const (
	Scheme = "raftq"
	Host   = "node"
)

// URI is the node URI SAN for id.
func URI(id string) *url.URL {
	return &url.URL{Scheme: Scheme, Host: Host, Path: "/" + id}
}

// ValidID reports whether id can be named in a node URI: not empty, and
// no '/', space, '=' or ',' (the separators of flags and URIs).
func ValidID(id string) bool {
	return id != "" && !strings.ContainsAny(id, "/ =,?#%")
}

// FromCert is the node id cert names, and whether it names exactly one:
// a certificate without a node URI, or with two, is not a node's.
func FromCert(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	id, n := "", 0
	for _, u := range cert.URIs {
		if u.Scheme != Scheme || u.Host != Host {
			continue
		}
		n++
		id = strings.TrimPrefix(u.Path, "/")
	}
	if n != 1 || !ValidID(id) {
		return "", false
	}
	return id, true
}

// Check accepts cert as a node certificate: it must carry exactly one
// node URI; with patterns (path.Match, as auth.node_names), its common
// name or its node URI must match one of them; and with want set, the
// id it names must be want. The error says which part failed and never
// includes key material.
func Check(cert *x509.Certificate, patterns []string, want string) (string, error) {
	if cert == nil {
		return "", errors.New("no verified certificate")
	}
	cn := cert.Subject.CommonName
	id, ok := FromCert(cert)
	if !ok {
		return "", fmt.Errorf("certificate %q is not a node certificate (no single %s://%s/<id> URI SAN)", cn, Scheme, Host)
	}
	if len(patterns) > 0 && !matchAny(patterns, cn) && !matchAny(patterns, URI(id).String()) {
		return id, fmt.Errorf("certificate %q (node %s) matches no node name pattern %q", cn, id, patterns)
	}
	if want != "" && id != want {
		return id, fmt.Errorf("certificate %q is node %s, but this address belongs to node %s", cn, id, want)
	}
	return id, nil
}

func matchAny(patterns []string, name string) bool {
	if name == "" {
		return false
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
