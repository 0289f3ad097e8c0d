// Package certgen makes a small development PKI: a certificate authority
// and the certificates it signs for raftq's nodes (server and client use,
// so one certificate serves a node's listeners and its calls to peers,
// plus the node URI raftq://node/<id> only node certificates carry: the
// Raft transport accepts nothing else), svcd, etcd and clients. `make certs` (cmd/raftq-certs) and the security tests use it;
// production certificates come from the operator's own CA.
//
// Keys are ECDSA P-256, serial numbers 128 random bits, and every
// certificate names exactly the hosts and IPs it is for, so hostname
// verification stays on everywhere.
package certgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/raftq/raftq/internal/nodeid"
)

// CA is a certificate authority that can issue certificates.
type CA struct {
	// Cert is the CA's own certificate.
	Cert *x509.Certificate
	// CertPEM is Cert in PEM form: what peers put in their trust pool.
	CertPEM []byte
	// KeyPEM is the CA's private key in PEM form (PKCS #8).
	KeyPEM []byte
	key    crypto.Signer
}

// NewCA creates a self-signed CA named name, valid for validFor from now
// (an hour back, so clocks a little behind still accept it).
func NewCA(name string, validFor time.Duration) (*CA, error) {
	if name == "" || validFor <= 0 {
		return nil, errors.New("certgen: a CA needs a name and a positive validity")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"raftq development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM, key: key}, nil
}

// LoadCA reads a CA written by WriteFiles (certificate and PKCS #8 key),
// so `make certs` can issue more certificates from an existing CA.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certgen: %s: no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", certFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certgen: %s is not a CA certificate", certFile)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("certgen: %s: no PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certgen: %s: not a signing key", keyFile)
	}
	return &CA{Cert: cert, CertPEM: certPEM, KeyPEM: keyPEM, key: signer}, nil
}

// Options describe one certificate to issue.
type Options struct {
	// CommonName is the subject's CN. Brokers identify peer nodes by it
	// (auth.node_names), so node certificates get e.g. "node.n1".
	CommonName string
	// DNSNames and IPs are the subject alternative names a client checks
	// against the address it dialled.
	DNSNames []string
	IPs      []net.IP
	// NodeID, when set, makes this a node certificate: it gets the URI
	// SAN raftq://node/<NodeID> (package nodeid), which only node
	// certificates carry and the Raft transport requires.
	NodeID string
	// Server and Client choose the extended key usages; a node's
	// certificate has both (it serves, and it calls its peers).
	Server, Client bool
	// ValidFor is the validity from now (default 90 days).
	ValidFor time.Duration
}

// Issue signs a new certificate with a fresh key and returns both in PEM.
func (ca *CA) Issue(o Options) (certPEM, keyPEM []byte, err error) {
	if o.CommonName == "" {
		return nil, nil, errors.New("certgen: a certificate needs a common name")
	}
	if !o.Server && !o.Client {
		return nil, nil, errors.New("certgen: a certificate must be for server or client use (or both)")
	}
	if o.Server && len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		return nil, nil, errors.New("certgen: a server certificate needs at least one DNS name or IP")
	}
	if o.ValidFor <= 0 {
		o.ValidFor = 90 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.CommonName, Organization: []string{"raftq development"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(o.ValidFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
	}
	if o.NodeID != "" {
		if !nodeid.ValidID(o.NodeID) {
			return nil, nil, fmt.Errorf("certgen: node id %q is not valid in a node URI", o.NodeID)
		}
		tmpl.URIs = []*url.URL{nodeid.URI(o.NodeID)}
	}
	if o.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if o.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Node issues a node certificate (server and client use) for CN
// "node.<id>" and URI raftq://node/<id>, valid for localhost, 127.0.0.1,
// ::1 and the given hosts (IP literals become IP SANs).
func (ca *CA) Node(id string, hosts ...string) (certPEM, keyPEM []byte, err error) {
	return ca.Issue(NodeOptions(id, hosts...))
}

// NodeOptions is Options for node id's certificate: CN node.<id>, its
// node URI, server and client use, loopback and hosts.
func NodeOptions(id string, hosts ...string) Options {
	o := LocalOptions("node."+id, true, true, hosts...)
	o.NodeID = id
	return o
}

// LocalOptions is Options for cn valid on loopback (localhost, 127.0.0.1,
// ::1) and hosts.
func LocalOptions(cn string, server, client bool, hosts ...string) Options {
	o := Options{CommonName: cn, Server: server, Client: client, DNSNames: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			o.IPs = append(o.IPs, ip)
		} else if h != "" {
			o.DNSNames = append(o.DNSNames, h)
		}
	}
	return o
}

// WriteFiles writes name.crt (0644) and name.key (0600) into dir, each
// through a temporary file renamed into place, so a process re-reading
// them never sees half a file.
func WriteFiles(dir, name string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := WriteAtomic(filepath.Join(dir, name+".crt"), certPEM, 0o644); err != nil {
		return err
	}
	if keyPEM == nil {
		return nil
	}
	return WriteAtomic(filepath.Join(dir, name+".key"), keyPEM, 0o600)
}

// WriteAtomic writes data to path through a temporary file in the same
// directory and a rename: readers see the old file or the new one, never
// a mix. This is how certificates should be rotated on disk.
func WriteAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err = f.Write(data); err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// Dev is a development PKI on disk: ca.crt (what everyone trusts) and
// <name>.crt and <name>.key for every certificate issued through it in
// Dir; the CA's key apart, in Dir/ca/ca.key (directory 0700, file 0600),
// so handing a node its files never hands it the CA key.
type Dev struct {
	Dir string
	CA  *CA
}

// Node is one node of a development PKI: its id and the host names or
// IPs its certificate is valid for besides loopback (its own SANs).
type Node struct {
	ID    string
	Hosts []string
}

// CAFile is the CA certificate every party trusts.
func (d *Dev) CAFile() string { return filepath.Join(d.Dir, "ca.crt") }

// CAKeyFile is the CA's private key, in its own directory.
func (d *Dev) CAKeyFile() string { return caKeyFile(d.Dir) }

func caKeyFile(dir string) string { return filepath.Join(dir, "ca", "ca.key") }

// CertFile is the certificate written under name.
func (d *Dev) CertFile(name string) string { return filepath.Join(d.Dir, name+".crt") }

// KeyFile is the private key written under name.
func (d *Dev) KeyFile(name string) string { return filepath.Join(d.Dir, name+".key") }

// Write issues a certificate with o and writes it under name.
func (d *Dev) Write(name string, o Options) error {
	c, k, err := d.CA.Issue(o)
	if err != nil {
		return err
	}
	return WriteFiles(d.Dir, name, c, k)
}

// CreateDev makes a new CA named caName in dir (replacing any there) and
// writes its certificate and, apart, its key.
func CreateDev(dir, caName string) (*Dev, error) {
	ca, err := NewCA(caName, 5*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := WriteFiles(dir, "ca", ca.CertPEM, nil); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(caKeyFile(dir)), 0o700); err != nil {
		return nil, err
	}
	if err := WriteAtomic(caKeyFile(dir), ca.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	return &Dev{Dir: dir, CA: ca}, nil
}

// HasCA reports whether dir holds a development CA's key (in ca/, or in
// the older layout next to the other keys).
func HasCA(dir string) bool {
	for _, p := range []string{caKeyFile(dir), filepath.Join(dir, "ca.key")} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// LoadDev opens the CA in dir. A CA key left next to the node keys by an
// older raftq-certs is moved into ca/ first.
func LoadDev(dir string) (*Dev, error) {
	old := filepath.Join(dir, "ca.key")
	if _, err := os.Stat(caKeyFile(dir)); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(old); err == nil {
			if err := os.MkdirAll(filepath.Dir(caKeyFile(dir)), 0o700); err != nil {
				return nil, err
			}
			if err := os.Rename(old, caKeyFile(dir)); err != nil {
				return nil, err
			}
		}
	}
	ca, err := LoadCA(filepath.Join(dir, "ca.crt"), caKeyFile(dir))
	if err != nil {
		return nil, err
	}
	return &Dev{Dir: dir, CA: ca}, nil
}

// NewDev creates a CA named caName in dir (replacing any there), then for
// every node id a node certificate "node.<id>", a "svcd" certificate, an
// "etcd" certificate (etcd's server and peer), and "client" and "admin"
// client certificates, all valid on loopback and the extra hosts.
func NewDev(dir, caName string, nodeIDs []string, hosts ...string) (*Dev, error) {
	d, err := CreateDev(dir, caName)
	if err != nil {
		return nil, err
	}
	return d, d.IssueDefaults(nodes(nodeIDs), hosts)
}

// OpenDev reuses the CA already in dir and issues the same certificates
// as NewDev: re-running `make certs` renews the leaf certificates without
// changing what everyone trusts.
func OpenDev(dir string, nodeIDs []string, hosts ...string) (*Dev, error) {
	d, err := LoadDev(dir)
	if err != nil {
		return nil, err
	}
	return d, d.IssueDefaults(nodes(nodeIDs), hosts)
}

func nodes(ids []string) []Node {
	out := make([]Node, len(ids))
	for i, id := range ids {
		out[i] = Node{ID: id}
	}
	return out
}

// IssueDefaults writes node.<id> for every node (its own hosts, then
// hosts), svcd, etcd (server and client use, valid on hosts), client (the
// SDK's, client use only) and admin (client use only: the operator's, for
// brokerctl's calls to etcd). Only node certificates carry a node URI.
func (d *Dev) IssueDefaults(nodes []Node, hosts []string) error {
	for _, n := range nodes {
		if err := d.Write("node."+n.ID, NodeOptions(n.ID, append(slices.Clone(n.Hosts), hosts...)...)); err != nil {
			return err
		}
	}
	for _, name := range []string{"svcd", "etcd"} {
		if err := d.Write(name, LocalOptions(name, true, true, hosts...)); err != nil {
			return err
		}
	}
	for _, name := range []string{"client", "admin"} {
		if err := d.Write(name, Options{CommonName: name, Client: true}); err != nil {
			return err
		}
	}
	return nil
}
