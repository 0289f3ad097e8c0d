package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/testutil"
)

// Invalid settings are configuration errors (exit 2) naming the key.
func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := map[string][]string{
		"db.driver (flag --db, env RAFTQ_DB_DRIVER)":    {"--db", "oracle"},
		"db.dsn (flag --dsn, env RAFTQ_DB_DSN)":         {"--db", "postgres"},
		"rate.limit (flag --rate-limit":                 {"--rate-limit", "-1"},
		"etcd.prefix (flag --etcd-prefix":               {"--etcd-prefix", "a//b"},
		"log.level (flag --log-level":                   {"--log-level", "loud"},
		"unexpected [\"extra\"]":                        {"extra"},
		"shutdown_timeout (flag --shutdown-timeout, en": {"--config", writeYAML(t, "shutdown_timeout: 10\n")},
		"brokers (flag --brokers, env RAFTQ_BROKERS)":   {"--data-dir", t.TempDir()},
		"verify.timeout (flag --verify-timeout":         {"--verify-timeout", "-1s"},
	}
	for want, args := range cases {
		err := run(context.Background(), args)
		var ce configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want a configuration error mentioning %q", args, err, want)
		}
	}
}

func writeYAML(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "svcd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// `svcd config` shows the DSN without its password, and where each value
// came from.
func TestConfigCommandRedacts(t *testing.T) {
	t.Setenv("RAFTQ_DB_DSN", "host=db user=raftq password=s3cret dbname=raftq")
	var out, errb bytes.Buffer
	code := printConfig([]string{"--db", "postgres", "--brokers", "127.0.0.1:7101", "--config", writeYAML(t, "rate:\n  limit: 50\n")}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	if strings.Contains(s, "s3cret") {
		t.Fatalf("password printed:\n%s", s)
	}
	for _, want := range []string{"dsn: host=db user=raftq password=REDACTED dbname=raftq # env RAFTQ_DB_DSN", "driver: postgres # flag --db", "limit: 50 # file"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if code := printConfig([]string{"--db", "mysql"}, &out, &errb); code != 2 {
		t.Fatalf("invalid config: exit %d", code)
	}
}

// Result verification: on by default with the brokers given, or found
// through etcd; off only when asked for explicitly.
func TestBrokersConfig(t *testing.T) {
	for _, c := range []struct {
		args     []string
		disabled bool
		addrs    []string
	}{
		{[]string{"--brokers", "127.0.0.1:7101,127.0.0.1:7102"}, false, []string{"127.0.0.1:7101", "127.0.0.1:7102"}},
		{[]string{"--etcd", "http://127.0.0.1:2379"}, false, nil}, // resolved through etcd at start
		{[]string{"--verify-brokers=false"}, true, nil},
	} {
		_, s, err := load(c.args, io.Discard)
		if err != nil || s.srv.Brokers.Disabled != c.disabled || strings.Join(s.srv.Brokers.Addrs, ",") != strings.Join(c.addrs, ",") {
			t.Errorf("%v: %v %+v", c.args, err, s.srv.Brokers)
		}
	}
}

// A real svcd process with --etcd registers itself and revokes the
// registration when SIGTERMed.
func TestEtcdRegistration(t *testing.T) {
	s := etcdtest.New(t)
	prefix := s.Prefix("svcd")
	grpcAddr, httpAddr := freeport.T(t), freeport.T(t)
	cmd := testutil.Child("svcd", "--listen-grpc", grpcAddr, "--listen-http", httpAddr,
		"--data-dir", t.TempDir(), "--etcd", s.Endpoint(), "--etcd-prefix", prefix, "--id", "s1", "--etcd-lease-ttl", "2s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	cli := s.Client()
	key := discovery.InstanceKey(prefix, discovery.ServiceSvcd, "s1")
	s.WaitKey(cli, key, true, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	insts, err := discovery.Instances(ctx, cli, prefix, discovery.ServiceSvcd)
	if err != nil || len(insts) != 1 || insts[0].Addr != grpcAddr || insts[0].Meta[discovery.MetaHTTPAddr] != httpAddr {
		t.Fatalf("registered %+v, %v", insts, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	// Revoked at once, not left to expire: the TTL is 2s, the wait 1s.
	s.WaitKey(cli, key, false, time.Second)
}
