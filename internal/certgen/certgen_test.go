package certgen

import (
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"testing"
	"time"
)

func TestIssueAndReload(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDev(dir, "test CA", []string{"n1"}, "broker.example", "10.0.0.7")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(d.CAFile(), d.CAKeyFile())
	if err != nil || !ca.Cert.Equal(d.CA.Cert) {
		t.Fatalf("LoadCA: %v", err)
	}
	c, _, err := ca.Node("n2", "broker.example")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	leaf, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "broker.example"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if leaf.Subject.CommonName != "node.n2" || leaf.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatalf("leaf %s valid to %v", leaf.Subject.CommonName, leaf.NotAfter)
	}
	for name, o := range map[string]Options{
		"no CN":         {Server: true, DNSNames: []string{"x"}},
		"no usage":      {CommonName: "x"},
		"server no SAN": {CommonName: "x", Server: true},
	} {
		if _, _, err := ca.Issue(o); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
	if _, err := NewCA("", time.Hour); err == nil {
		t.Error("a CA without a name")
	}
	if _, err := LoadCA(d.CertFile("node.n1"), d.KeyFile("node.n1")); err == nil {
		t.Error("a leaf loaded as a CA")
	}
	if _, err := OpenDev(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("OpenDev of an empty directory")
	}
}

func parse(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	return x509.ParseCertificate(block.Bytes)
}
