package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/liveconfig"
)

// `brokerctl config set/show/unset` against a real etcd: set changes only
// the fields given, bad values are refused and nothing is written, show
// lists settings and brokers, unset removes.
func TestConfigSetShowUnset(t *testing.T) {
	s := etcdtest.New(t)
	cli := s.Client()
	p := s.Prefix("ctl")
	etcdArgs := func(args ...string) []string {
		return append([]string{"config", "--etcd", s.Endpoint(), "--etcd-prefix", p}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored := func(key string) (liveconfig.QueueConfig, bool) {
		t.Helper()
		r, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			return liveconfig.QueueConfig{}, false
		}
		c, err := liveconfig.ParseQueueConfig(r.Kvs[0].Value)
		if err != nil {
			t.Fatalf("stored value does not parse: %v: %s", err, r.Kvs[0].Value)
		}
		return c, true
	}
	qk := liveconfig.QueueKey(p, "emails")

	ctlOK(t, "", etcdArgs("set", "queue", "emails", "--max-in-flight", "4", "--rate", "10", "--lease-duration", "45s")...)
	ctlOK(t, "", etcdArgs("set", "queue", "emails", "--max-attempts", "3", "--max-in-flight-per-key", "2", "--rate-per-key", "1.5")...)
	c, ok := stored(qk)
	want := liveconfig.QueueConfig{MaxInFlight: 4, RatePerSec: 10, LeaseDuration: liveconfig.Duration(45 * time.Second), MaxAttempts: 3,
		MaxInFlightPerKey: 2, RatePerKey: 1.5}
	if !ok || c != want {
		t.Fatalf("stored %+v, want %+v", c, want)
	}
	// Refused, and the stored value is untouched.
	for _, bad := range [][]string{
		{"set", "queue", "emails", "--max-in-flight", "-1"},
		{"set", "queue", "emails", "--max-in-flight-per-key", "-1"},
		{"set", "queue", "emails", "--lease-duration", "24h"},
		{"set", "queue", "emails", "--initial-backoff", "1h", "--max-backoff", "1m"},
		{"set", "queue", "bad name"},
		{"set", "queue", "emails"},
		{"set", "log-level", "loud"},
		{"unset", "queue"},
	} {
		if out, err := ctl(t, "", etcdArgs(bad...)...); err == nil {
			t.Errorf("%v accepted:\n%s", bad, out)
		}
	}
	if c2, _ := stored(qk); c2 != want {
		t.Fatalf("refused set changed the value: %+v", c2)
	}
	ctlOK(t, "", etcdArgs("set", "defaults", "--max-attempts", "7")...)
	ctlOK(t, "", etcdArgs("set", "log-level", "DEBUG")...)
	reg, err := discovery.Register(cli, p, discovery.ServiceBrokers, discovery.Instance{ID: "n1", Addr: "127.0.0.1:7101"}, discovery.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	s.WaitKey(cli, reg.Key(), true, 10*time.Second)

	out := ctlOK(t, "", etcdArgs("show")...)
	for _, w := range []string{"queues/emails", `"max_in_flight":4`, "defaults", `"max_attempts":7`, "log_level", `"debug"`, "n1", "127.0.0.1:7101"} {
		if !strings.Contains(out, w) {
			t.Errorf("show lacks %q:\n%s", w, out)
		}
	}
	var js struct {
		Settings map[string]json.RawMessage
		Brokers  []discovery.Instance
	}
	if err := json.Unmarshal([]byte(ctlOK(t, "", append([]string{"-o", "json"}, etcdArgs("show")...)...)), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Settings) != 3 || len(js.Brokers) != 1 {
		t.Fatalf("show -o json: %+v", js)
	}

	ctlOK(t, "", etcdArgs("unset", "queue", "emails")...)
	ctlOK(t, "", etcdArgs("unset", "log-level")...)
	if _, ok := stored(qk); ok {
		t.Fatal("unset left the queue's settings")
	}
	if r, _ := cli.Get(ctx, liveconfig.LogLevelKey(p)); len(r.Kvs) != 0 {
		t.Fatal("unset left the log level")
	}
}

// TestConfigOverTLS: `brokerctl config` reaches an etcd that requires
// client certificates with --etcd-tls-*, refuses an http:// endpoint when
// they are set, and without a certificate writes nothing.
func TestConfigOverTLS(t *testing.T) {
	pki, err := certgen.NewDev(t.TempDir(), "test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := etcdtest.NewTLS(t, etcdtest.TLSFiles{CA: pki.CAFile(), Cert: pki.CertFile("etcd"), Key: pki.KeyFile("etcd")})
	p := s.Prefix("ctl")
	tlsArgs := []string{"--etcd-tls-ca", pki.CAFile(), "--etcd-tls-cert", pki.CertFile("admin"), "--etcd-tls-key", pki.KeyFile("admin")}
	set := func(endpoint string, extra ...string) (string, error) {
		return ctl(t, "", append(append([]string{"config", "--etcd", endpoint, "--etcd-prefix", p, "--timeout", "3s"}, extra...),
			"set", "queue", "emails", "--max-in-flight", "4")...)
	}
	if out, err := set(s.Endpoint(), tlsArgs...); err != nil {
		t.Fatalf("with the admin certificate: %v\n%s", err, out)
	}
	plain := strings.Replace(s.Endpoint(), "https://", "http://", 1)
	if out, err := set(plain, tlsArgs...); err == nil || !strings.Contains(err.Error(), "is not https://") {
		t.Fatalf("an http endpoint with --etcd-tls-*: %v\n%s", err, out)
	}
	if _, err := set(s.Endpoint(), "--etcd-tls-ca", pki.CAFile()); err == nil {
		t.Fatal("a put without a client certificate succeeded")
	}
}
