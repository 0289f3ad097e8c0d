package daemon_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/brokerd/etcdnode"
	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	"github.com/raftq/raftq/internal/tlsutil"
)

// The etcd half of the security tests (brokerd/security_test.go has the
// node's): etcd over TLS, and a bootstrap record tied to the cluster's CA.

// TestEtcdOverTLS: a node configured with etcd TLS registers in an etcd
// that serves only TLS and requires client certificates; a client
// without a certificate gets nothing from it.
func TestEtcdOverTLS(t *testing.T) {
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", []string{"n1", "etcd"})
	if err != nil {
		t.Fatal(err)
	}
	e := etcdtest.NewTLS(t, etcdtest.TLSFiles{CA: pki.CAFile(), Cert: pki.CertFile("node.etcd"), Key: pki.KeyFile("node.etcd")})
	src, err := tlsutil.Load(tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile("node.n1"), Key: pki.KeyFile("node.n1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix := e.Prefix("tls")
	c := testcluster.New(t, 1, nil, func(cfg *daemon.Config) {
		cfg.Etcd = etcdnode.Config{Endpoints: e.Endpoints(), Prefix: prefix, TLS: src.ClientTLSConfig()}
	})
	e.WaitKey(e.Client(), discovery.InstanceKey(prefix, discovery.ServiceBrokers, "n1"), true, 30*time.Second)
	_ = c

	noCert, err := tlsutil.Load(tlsutil.Files{CA: pki.CAFile()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 2 * time.Second, TLS: noCert.ClientTLSConfig(), Logger: zap.NewNop()})
	if err == nil {
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if _, err := cli.Get(ctx, prefix, clientv3.WithPrefix()); err == nil {
			t.Fatal("etcd answered a client without a certificate")
		}
	}
}

// TestBootstrapRecordTiedToCluster: a fresh node bootstrapping through
// etcd refuses a cluster record written for another CA and one placing it
// at another Raft address (it neither bootstraps nor joins, and says so
// once); given a record for its CA and address, it bootstraps.
func TestBootstrapRecordTiedToCluster(t *testing.T) {
	e := etcdtest.New(t)
	cli := e.Client()
	prefix := e.Prefix("record")
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "cluster CA", []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := certgen.NewCA("another cluster's CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := func(c *x509.Certificate) string { return fmt.Sprintf("%x", sha256.Sum256(c.Raw)) }
	raftAddr := freeport.T(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func(rec etcdnode.ClusterRecord) {
		t.Helper()
		b, _ := json.Marshal(rec)
		if _, err := cli.Put(ctx, etcdnode.ClusterKey(prefix), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	rec := etcdnode.ClusterRecord{ClusterID: "forged", Voters: []brokerd.Peer{{ID: "n1", RaftAddr: raftAddr}}, By: "n1", CA: fingerprint(other.Cert)}
	put(rec)

	logs := &testutil.Buffer{}
	cfg := daemon.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.GRPCAddr = "n1", filepath.Join(dir, "n1"), raftAddr, freeport.T(t)
	cfg.BootstrapExpect = 1
	cfg.TLS = brokerd.TLSConfig{Files: tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile("node.n1"), Key: pki.KeyFile("node.n1")}}
	cfg.Etcd = etcdnode.Config{Client: cli, Prefix: prefix, LeaseTTL: 2 * time.Second}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	n, err := daemon.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Kill()
	servers := func() int {
		f := n.Raft().GetConfiguration()
		if f.Error() != nil {
			t.Fatal(f.Error())
		}
		return len(f.Configuration().Servers)
	}
	testutil.WaitFor(t, 30*time.Second, "the record of another CA to be refused", func() bool { return strings.Contains(logs.String(), "written for another cluster") })
	if servers() != 0 {
		t.Fatal("the node bootstrapped from a record of another CA")
	}
	rec.CA = fingerprint(pki.CA.Cert)
	rec.Voters[0].RaftAddr = "127.0.0.1:1"
	put(rec)
	testutil.WaitFor(t, 30*time.Second, "the record placing n1 elsewhere to be refused", func() bool { return strings.Contains(logs.String(), "at raft address 127.0.0.1:1") })
	if servers() != 0 {
		t.Fatal("the node bootstrapped from a record naming it at another address")
	}
	if c := strings.Count(logs.String(), "refusing the cluster record"); c != 2 {
		t.Fatalf("%d refusal lines for 2 records, want one each:\n%s", c, logs.String())
	}
	rec.Voters[0].RaftAddr = raftAddr
	put(rec)
	testutil.WaitFor(t, 30*time.Second, "the node to bootstrap from its cluster's record", func() bool { return n.IsLeaderReady() })
}
