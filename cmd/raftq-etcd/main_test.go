package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/raftq/raftq/internal/freeport"
)

func TestFlagsToConfig(t *testing.T) {
	o, err := parseFlags([]string{
		"--name", "e1", "--data-dir", "/d",
		"--listen-client", "0.0.0.0:2379", "--advertise-client", "http://e1:2379",
		"--listen-peer", "http://0.0.0.0:2380", "--advertise-peer", "e1:2380",
		"--initial-cluster", "e1=http://e1:2380,e2=http://e2:2380",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	check := func(what, got, want string) {
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	check("name", cfg.Name, "e1")
	check("dir", cfg.Dir, "/d")
	check("listen client", cfg.ListenClientUrls[0].String(), "http://0.0.0.0:2379")
	check("advertise client", cfg.AdvertiseClientUrls[0].String(), "http://e1:2379")
	check("listen peer", cfg.ListenPeerUrls[0].String(), "http://0.0.0.0:2380")
	check("advertise peer", cfg.AdvertisePeerUrls[0].String(), "http://e1:2380")
	check("initial cluster", cfg.InitialCluster, "e1=http://e1:2380,e2=http://e2:2380")
	check("state", cfg.ClusterState, embed.ClusterStateFlagNew)

	for _, bad := range [][]string{
		{}, // no data dir
		{"--data-dir", "d", "--listen-client", ","},
		{"--data-dir", "d", "--initial-cluster-state", "maybe"},
		{"--data-dir", "d", "extra"},
		// TLS only with client-certificate auth, and then no http URL.
		{"--data-dir", "d", "--cert-file", "c", "--key-file", "k"},
		{"--data-dir", "d", "--client-cert-allowed-cn", "node.n1"},
		{"--data-dir", "d", "--cert-file", "c", "--key-file", "k", "--trusted-ca-file", "ca", "--listen-client", "http://127.0.0.1:2379"},
		{"--data-dir", "d", "--cert-file", "c", "--key-file", "k", "--trusted-ca-file", "ca", "--listen-peer", "http://127.0.0.1:2380"},
	} {
		o, err := parseFlags(bad)
		if err == nil {
			_, err = o.config()
		}
		if err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// start runs a real etcd configured by args (the command's flags) until
// the test ends.
func start(t *testing.T, args ...string) *embed.Etcd {
	t.Helper()
	o, err := parseFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		t.Fatal("etcd not ready")
	}
	return e
}

// TestServes starts a real single-member etcd from the flags and checks it
// answers /health, then closes it.
func TestServes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	client, peer := freeport.T(t), freeport.T(t)
	start(t, "--name", "t", "--data-dir", t.TempDir(), "--listen-client", client, "--listen-peer", peer)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+client+"/health", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/health: %s", res.Status)
	}
}
