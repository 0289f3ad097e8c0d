package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/brokerd/etcdnode"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/liveconfig"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/tlsutil"
)

// TestSecureEtcdRefusesUnauthenticatedWrites: raftq-etcd started with the
// secure profile's flags (TLS, client certificates required, the node and
// svcd names only) serves three brokers that follow live config through
// it with their node certificates. The put of a queue's live config that
// the issue made over plaintext HTTP is refused, and so is the same put
// over TLS without a client certificate, with the SDK's client
// certificate (signed by the same CA) and through the gRPC API without a
// certificate; the key and every broker's live config stay as they were.
// A put with a node certificate succeeds, so the refusals are the
// security, not a broken server (the JSON gateway is off with
// --client-cert-allowed-cn: it answers no one).
func TestSecureEtcdRefusesUnauthenticatedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and a cluster")
	}
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", []string{"n1", "n2", "n3"})
	if err != nil {
		t.Fatal(err)
	}
	client, peer := freeport.T(t), freeport.T(t)
	start(t, "--name", "secure", "--data-dir", filepath.Join(dir, "etcd"),
		"--cert-file", pki.CertFile("etcd"), "--key-file", pki.KeyFile("etcd"), "--trusted-ca-file", pki.CAFile(),
		"--client-cert-allowed-cn", "node.n1,node.n2,node.n3,svcd",
		"--listen-client", client, "--listen-peer", peer)
	endpoint := "https://" + client
	src := func(name string) *tlsutil.Source {
		s, err := tlsutil.Load(tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile(name), Key: pki.KeyFile(name)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const prefix = "raftq"
	c := testcluster.New(t, 3, nil, func(cfg *daemon.Config) {
		cfg.Etcd = etcdnode.Config{Endpoints: []string{endpoint}, Prefix: prefix, TLS: src("node." + cfg.NodeID).ClientTLSConfig()}
	})
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, TLS: src("node.n1").ClientTLSConfig(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key := liveconfig.QueueKey(prefix, "orders")
	if _, err := admin.Put(ctx, key, `{"max_in_flight":5}`); err != nil {
		t.Fatal(err)
	}
	applied := func() bool {
		for _, n := range c.Up() {
			if lc := c.Daemon(n).LiveConfig(); lc == nil || lc.Queue("orders").MaxInFlight != 5 {
				return false
			}
		}
		return true
	}
	for !applied() {
		if ctx.Err() != nil {
			t.Fatal("the brokers never applied the live config")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before, err := admin.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}

	// The attack of the issue: etcd's JSON gateway, /v3/kv/put.
	body := func(k string) []byte {
		b, _ := json.Marshal(map[string]string{
			"key":   base64.StdEncoding.EncodeToString([]byte(k)),
			"value": base64.StdEncoding.EncodeToString([]byte(`{"max_in_flight":1,"rate_per_sec":0.01}`)),
		})
		return b
	}
	put := func(scheme string, cfg *tls.Config, k string) (int, error) {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
		res, err := hc.Post(scheme+"://"+client+"/v3/kv/put", "application/json", bytes.NewReader(body(k)))
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	caOnly := &tls.Config{RootCAs: src("client").Pool()}
	for name, attempt := range map[string]func() (int, error){
		"plaintext HTTP":           func() (int, error) { return put("http", nil, key) },
		"TLS without certificate":  func() (int, error) { return put("https", caOnly, key) },
		"TLS with the client cert": func() (int, error) { return put("https", src("client").ClientTLSConfig(), key) },
		"gRPC without certificate": func() (int, error) {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, TLS: caOnly, Logger: zap.NewNop()})
			if err != nil {
				return 0, err
			}
			defer cli.Close()
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			defer pcancel()
			_, err = cli.Put(pctx, key, `{"max_in_flight":1}`)
			return http.StatusOK, err
		},
	} {
		if code, err := attempt(); err == nil && code == http.StatusOK {
			t.Errorf("%s: the put was accepted", name)
		}
	}
	// The gRPC API with a node certificate works; the HTTP gateway answers
	// no one, not even a node.
	probe := liveconfig.QueueKey(prefix, "probe")
	n2, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, TLS: src("node.n2").ClientTLSConfig(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if _, err := n2.Put(ctx, probe, `{"max_in_flight":2}`); err != nil {
		t.Fatalf("an authorized put: %v", err)
	}
	if code, err := put("https", src("node.n2").ClientTLSConfig(), key); err == nil && code == http.StatusOK {
		t.Fatal("the JSON gateway took a put")
	}

	after, err := admin.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if after.Kvs[0].ModRevision != before.Kvs[0].ModRevision || string(after.Kvs[0].Value) != `{"max_in_flight":5}` {
		t.Fatalf("the live config key changed: %s (mod revision %d, was %d)", after.Kvs[0].Value, after.Kvs[0].ModRevision, before.Kvs[0].ModRevision)
	}
	// Once the brokers have seen the probe, written after the refused
	// attempts, any change those made would have reached them; none did.
	for _, n := range c.Up() {
		for c.Daemon(n).LiveConfig().Queue("probe").MaxInFlight != 2 {
			if ctx.Err() != nil {
				t.Fatalf("broker %s never saw the probe", n.ID())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got := c.Daemon(n).LiveConfig().Queue("orders"); got.MaxInFlight != 5 || got.RatePerSec != 0 {
			t.Fatalf("broker %s: live config for orders is %+v", n.ID(), got)
		}
	}
}
