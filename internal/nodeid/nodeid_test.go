package nodeid

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
)

func cert(cn string, uris ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, p)
	}
	return c
}

func TestCheck(t *testing.T) {
	nodes := []string{"node.*"}
	for _, tc := range []struct {
		name     string
		cert     *x509.Certificate
		patterns []string
		want     string
		ok       bool
	}{
		{"node", cert("node.n1", "raftq://node/n1"), nodes, "", true},
		{"expected id", cert("node.n1", "raftq://node/n1"), nodes, "n1", true},
		{"another id", cert("node.n3", "raftq://node/n3"), nodes, "n1", false},
		{"client: no node URI", cert("client"), nodes, "", false},
		{"node name without the URI", cert("node.n1"), nodes, "", false},
		{"two node URIs", cert("node.n1", "raftq://node/n1", "raftq://node/n2"), nodes, "", false},
		{"URI of another scheme", cert("node.n1", "spiffe://node/n1"), nodes, "", false},
		{"name not listed", cert("svcd", "raftq://node/x"), nodes, "", false},
		{"URI pattern", cert("anything", "raftq://node/n2"), []string{"raftq://node/n*"}, "n2", true},
		{"no patterns: the URI is enough", cert("x", "raftq://node/n2"), nil, "", true},
		{"bad id in URI", cert("node.a", "raftq://node/a/b"), nodes, "", false},
		{"nil", nil, nodes, "", false},
	} {
		_, err := Check(tc.cert, tc.patterns, tc.want)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if u := URI("n1").String(); u != "raftq://node/n1" {
		t.Fatalf("URI: %s", u)
	}
}
