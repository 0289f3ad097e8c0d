package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/tracing"
	"github.com/raftq/raftq/worker"
	"github.com/raftq/raftq/workerd"
)

// cleanEnv blanks every RAFTQ_* variable workerd reads, for the test, so
// the developer's environment cannot change what a test sees (an empty
// variable counts as unset).
func cleanEnv(t *testing.T) {
	t.Helper()
	t.Setenv(config.EnvPrefix+"_CONFIG", "")
	for _, k := range keys() {
		t.Setenv(k.Env(), "")
	}
}

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "workerd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every invalid setting, from a flag, the environment or the file, is a
// configuration error: exit status 2, one line naming the key (with its
// flag and variable) and the reason, and nothing started (no log line: the
// logger does not exist yet).
func TestConfigErrorsNameTheKey(t *testing.T) {
	tmp := t.TempDir()
	writeFile := func(t *testing.T, name, body string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{name: "bad concurrency", args: []string{"--queues", "default:0"},
			want: `queues (flag --queues, env RAFTQ_QUEUES): queue "default:0": concurrency must be a positive integer (set by flag)`},
		{name: "no queues", args: []string{"--queues", ""}, want: "queues (flag --queues, env RAFTQ_QUEUES): required"},
		{name: "duplicate queue", env: map[string]string{"RAFTQ_QUEUES": "a,a:2"}, want: `queues (flag --queues, env RAFTQ_QUEUES): queue "a" listed twice (set by env)`},
		{name: "log level", args: []string{"--log-level", "loud"}, want: `log.level (flag --log-level, env RAFTQ_LOG_LEVEL): "loud": want debug, info, warn or error`},
		{name: "negative poll wait", args: []string{"--poll-wait", "-1s"}, want: "poll_wait (flag --poll-wait, env RAFTQ_POLL_WAIT): must not be negative"},
		{name: "duration without unit", env: map[string]string{"RAFTQ_SHUTDOWN_TIMEOUT": "30"},
			want: `shutdown_timeout (flag --shutdown-timeout, env RAFTQ_SHUTDOWN_TIMEOUT): "30" is not a duration`},
		// pflag parses typed flags itself: its message names the flag.
		{name: "bad duration flag", args: []string{"--poll-wait", "soon"}, want: `flags: invalid argument "soon" for "--poll-wait" flag`},
		{name: "bad duration in file", file: "lease_duration: soon\n", want: `lease_duration (flag --lease-duration, env RAFTQ_LEASE_DURATION): "soon" is not a duration`},
		{name: "unknown key in file", file: "brokerz: [a:1]\n", want: "brokerz: unknown key in"},
		{name: "metrics address", args: []string{"--metrics-addr", "9102"}, want: `metrics.addr (flag --metrics-addr, env RAFTQ_METRICS_ADDR): "9102": want host:port`},
		{name: "etcd prefix", args: []string{"--etcd", "http://127.0.0.1:1", "--etcd-prefix", "a//b"}, want: "etcd.prefix (flag --etcd-prefix, env RAFTQ_ETCD_PREFIX):"},
		{name: "credentials without etcd", env: map[string]string{"RAFTQ_ETCD_PASSWORD": "s3cret"},
			want: "etcd.endpoints (flag --etcd, env RAFTQ_ETCD_ENDPOINTS): required when etcd credentials are set"},
		{name: "etcd dial timeout", args: []string{"--etcd", "http://127.0.0.1:1", "--etcd-dial-timeout", "0"},
			want: "etcd.dial_timeout (flag --etcd-dial-timeout, env RAFTQ_ETCD_DIAL_TIMEOUT): must be positive"},
		{name: "token without TLS", env: map[string]string{"RAFTQ_AUTH_TOKEN": "t0ken"},
			want: "auth.token (flag --auth-token, env RAFTQ_AUTH_TOKEN): needs TLS (tls.ca)"},
		{name: "missing token file", args: []string{"--token-file", "/nonexistent/worker.token"},
			want: "auth.token_file (flag --token-file, env RAFTQ_AUTH_TOKEN_FILE): open /nonexistent/worker.token"},
		{name: "empty token file", args: []string{"--token-file", writeFile(t, "empty.token", " \n")},
			want: "auth.token_file (flag --token-file, env RAFTQ_AUTH_TOKEN_FILE): " + filepath.Join(tmp, "empty.token") + " is empty"},
		{name: "token file with two words", args: []string{"--token-file", writeFile(t, "two.token", "a b\n")},
			want: "auth.token_file (flag --token-file, env RAFTQ_AUTH_TOKEN_FILE): " + filepath.Join(tmp, "two.token") + " holds more than one word"},
		{name: "token and token file", args: []string{"--token-file", writeFile(t, "one.token", "t0ken\n")}, env: map[string]string{"RAFTQ_AUTH_TOKEN": "t0ken"},
			want: "auth.token_file (flag --token-file, env RAFTQ_AUTH_TOKEN_FILE): set auth.token_file or auth.token, not both"},
		{name: "token file without TLS", args: []string{"--token-file", writeFile(t, "one.token", "t0ken\n")},
			want: "auth.token (flag --auth-token, env RAFTQ_AUTH_TOKEN): needs TLS (tls.ca)"},
		{name: "client cert without CA", args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"},
			want: "tls.ca (flag --tls-ca, env RAFTQ_TLS_CA): required when tls.cert or tls.key is set"},
		{name: "unreadable CA", args: []string{"--tls-ca", "/nonexistent/ca.pem"}, want: "tls.ca (flag --tls-ca, env RAFTQ_TLS_CA):"},
		{name: "unknown flag", args: []string{"--nope"}, want: "flags: unknown flag: --nope"},
		{name: "old single-dash", args: []string{"-brokers", "a:1"}, want: "flags: unknown shorthand flag"},
		{name: "argument", args: []string{"extra"}, want: `arguments: unexpected ["extra"]`},
		{name: "missing file", env: map[string]string{"RAFTQ_CONFIG": "/nonexistent/workerd.yaml"}, want: "config (flag --config, env RAFTQ_CONFIG): read /nonexistent/workerd.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeYAML(t, tc.file)}, args...)
			}
			// Cancelled: if the configuration were accepted by mistake,
			// the daemon would stop at once instead of hanging the test.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var out, errb bytes.Buffer
			code := run(ctx, args, &out, &errb)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, errb.String())
			}
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			if lines[0] != "workerd: invalid configuration:" {
				t.Fatalf("stderr does not start with the header:\n%s", errb.String())
			}
			if !strings.Contains(errb.String(), "  "+tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errb.String())
			}
			if strings.Contains(errb.String(), "{") {
				t.Errorf("something logged before the configuration was refused:\n%s", errb.String())
			}
		})
	}
}

// Every problem is reported at once, one line each.
func TestConfigErrorsAllAtOnce(t *testing.T) {
	cleanEnv(t)
	t.Setenv("RAFTQ_POLL_WAIT", "soon")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--queues", "x:y", "--log-level", "loud"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, key := range []string{"  queues (", "  log.level (", "  poll_wait ("} {
		if !strings.Contains(errb.String(), key) {
			t.Errorf("stderr lacks %q:\n%s", key, errb.String())
		}
	}
}

// Defaults < file (--config or RAFTQ_CONFIG) < RAFTQ_* environment <
// flags, each layer winning for some key.
func TestConfigLayers(t *testing.T) {
	cleanEnv(t)
	file := writeYAML(t, `
queues: [a:2, b]
poll_wait: 5s
lease_duration: 1m
worker:
  id: from-file
etcd:
  endpoints:
    - http://10.0.0.9:2379
  prefix: prod
`)
	t.Setenv("RAFTQ_LEASE_DURATION", "2m")
	t.Setenv("RAFTQ_WORKER_ID", "from-env")
	t.Setenv("RAFTQ_ETCD_ENDPOINTS", "http://e1:2379,http://e2:2379")
	v, s, err := load(newLoader(), []string{"--config", file, "--worker-id", "from-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.ShutdownTimeout != 30*time.Second || v.Source("shutdown_timeout") != config.FromDefault {
		t.Errorf("shutdown_timeout %s from %s, want the default 30s", s.cfg.ShutdownTimeout, v.Source("shutdown_timeout"))
	}
	if want := []worker.QueueConfig{{Name: "a", Concurrency: 2}, {Name: "b", Concurrency: 1}}; !reflect.DeepEqual(s.cfg.Queues, want) {
		t.Errorf("queues %+v, want %+v (file)", s.cfg.Queues, want)
	}
	if s.cfg.PollWait != 5*time.Second || v.Source("poll_wait") != config.FromFile {
		t.Errorf("poll_wait %s from %s, want 5s from the file", s.cfg.PollWait, v.Source("poll_wait"))
	}
	if s.cfg.LeaseDuration != 2*time.Minute || v.Source("lease_duration") != config.FromEnv {
		t.Errorf("lease_duration %s from %s, want 2m from env", s.cfg.LeaseDuration, v.Source("lease_duration"))
	}
	if s.cfg.WorkerID != "from-flag" || v.Source("worker.id") != config.FromFlag {
		t.Errorf("worker.id %q from %s, want the flag's", s.cfg.WorkerID, v.Source("worker.id"))
	}
	if want := []string{"http://e1:2379", "http://e2:2379"}; !reflect.DeepEqual(s.etcd.endpoints, want) || s.etcd.prefix != "prod" {
		t.Errorf("etcd %v under %q, want %v (env) under prod (file)", s.etcd.endpoints, s.etcd.prefix, want)
	}

	// RAFTQ_CONFIG names the file when --config does not.
	t.Setenv("RAFTQ_CONFIG", file)
	if _, s, err = load(newLoader(), nil); err != nil || s.cfg.PollWait != 5*time.Second {
		t.Errorf("with RAFTQ_CONFIG: poll_wait %s, %v; want 5s from the file", s.cfg.PollWait, err)
	}
}

// Every flag workerd had before the loader keeps its name and meaning.
func TestOldFlagsKeepWorking(t *testing.T) {
	cleanEnv(t)
	_, s, err := load(newLoader(), []string{
		"--brokers", "a:1,b:2", "--queues", "q:3,r", "--worker-id", "w1", "--shutdown-timeout", "5s",
		"--poll-wait", "2s", "--lease-duration", "1m", "--metrics-addr", ":9102", "--log-level", "debug", "--svcd", "svcd:7400",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := settings{
		cfg: workerd.Config{
			Queues:   []worker.QueueConfig{{Name: "q", Concurrency: 3}, {Name: "r", Concurrency: 1}},
			WorkerID: "w1", ShutdownTimeout: 5 * time.Second, PollWait: 2 * time.Second, LeaseDuration: time.Minute, MetricsAddr: ":9102",
		},
		level: slog.LevelDebug, brokers: []string{"a:1", "b:2"}, svcd: "svcd:7400",
		etcd: etcdSettings{prefix: "raftq", dialTimeout: 5 * time.Second},
		// Tracing off (no endpoint), named for when it is on.
		tracing: tracing.Config{ServiceName: "workerd"},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("settings\n %+v\nwant\n %+v", s, want)
	}
	// The flag=value form works too.
	if _, s, err = load(newLoader(), []string{"--brokers=c:3", "--poll-wait=3s"}); err != nil || s.brokers[0] != "c:3" || s.cfg.PollWait != 3*time.Second {
		t.Errorf("--flag=value: %+v %v", s, err)
	}
}

// What etcd is used for: whatever of brokers and svcd is not given.
func TestDiscoveryChoice(t *testing.T) {
	cases := []struct {
		name          string
		args          []string
		env           map[string]string
		brokers, svcd bool
	}{
		{name: "no etcd", args: nil},
		{name: "only etcd", args: []string{"--etcd", "http://e:2379"}, brokers: true, svcd: true},
		{name: "etcd and brokers", args: []string{"--etcd", "http://e:2379", "--brokers", "a:1"}, svcd: true},
		{name: "etcd and svcd", args: []string{"--etcd", "http://e:2379", "--svcd", "s:7400"}, brokers: true},
		{name: "etcd, brokers from env", args: []string{"--etcd", "http://e:2379"}, env: map[string]string{"RAFTQ_BROKERS": "a:1"}, svcd: true},
		{name: "etcd from env", env: map[string]string{"RAFTQ_ETCD_ENDPOINTS": "http://e:2379"}, brokers: true, svcd: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, s, err := load(newLoader(), tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if s.brokersFromEtcd() != tc.brokers || s.svcdFromEtcd() != tc.svcd {
				t.Errorf("brokers through etcd %v, svcd %v; want %v, %v", s.brokersFromEtcd(), s.svcdFromEtcd(), tc.brokers, tc.svcd)
			}
		})
	}
}

// `workerd config` prints YAML with each value's source and the etcd
// password redacted; the output loads back as a --config file with the
// same meaning; an invalid configuration is status 2.
func TestConfigCommand(t *testing.T) {
	cleanEnv(t)
	t.Setenv("RAFTQ_ETCD_PASSWORD", "s3cret")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"config", "--config", writeYAML(t, "queues: [a:2]\n"),
		"--etcd", "http://10.0.0.9:2379", "--etcd-username", "worker"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	if strings.Contains(s, "s3cret") {
		t.Fatalf("password printed:\n%s", s)
	}
	for _, want := range []string{
		"password: REDACTED # env RAFTQ_ETCD_PASSWORD",
		"username: worker # flag --etcd-username",
		"endpoints: ['http://10.0.0.9:2379'] # flag --etcd",
		"queues: ['a:2'] # file",
		"poll_wait: 30s # default",
		"prefix: raftq # default",
		"# brokers not set: found through etcd, target etcd:///raftq/brokers",
		"# svcd.addr not set: found through etcd, target etcd:///raftq/svcd",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}

	// Printed, then read back: the same settings (the password aside).
	cleanEnv(t)
	_, again, err := load(newLoader(), []string{"--config", writeYAML(t, s)})
	if err != nil {
		t.Fatalf("printed configuration does not load: %v\n%s", err, s)
	}
	if !again.brokersFromEtcd() || !again.svcdFromEtcd() || again.etcd.username != "worker" || again.cfg.Queues[0].Concurrency != 2 {
		t.Errorf("read back: %+v", again)
	}

	out.Reset()
	if code := run(context.Background(), []string{"config"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "# brokers not set, nor etcd.endpoints: dialling 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103") ||
		!strings.Contains(out.String(), "# svcd.addr not set, nor etcd.endpoints: outcomes are not recorded") {
		t.Errorf("without etcd: exit %d\n%s", code, out.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"config", "--log-level", "loud"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "log.level (flag --log-level") {
		t.Errorf("invalid: exit %d, want 2 naming log.level:\n%s", code, errb.String())
	}
	for _, args := range [][]string{{"config", "--help"}, {"--help"}} {
		errb.Reset()
		if code := run(context.Background(), args, &out, &errb); code != 0 || !strings.Contains(errb.String(), "--etcd-prefix") {
			t.Errorf("%v: exit %d, want 0 and the usage:\n%s", args, code, errb.String())
		}
	}
}

// --auth-token keeps working but warns (other users see it in ps); the
// same token from the environment or a --token-file does not warn, and
// the file's token is what is sent.
func TestTokenSources(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "worker.token")
	if err := os.WriteFile(file, []byte("  t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := []string{"--tls-ca", pki.CAFile()}
	_, s, err := load(newLoader(), append(ca, "--auth-token", "t0ken"))
	if err != nil || s.token != "t0ken" || len(s.warnings) != 1 || !strings.Contains(s.warnings[0], "ps") {
		t.Errorf("--auth-token: %v %q %q", err, s.token, s.warnings)
	}
	_, s, err = load(newLoader(), append(ca, "--token-file", file))
	if err != nil || s.token != "t0ken" || s.cfg.ClientOptions.Token != "t0ken" || len(s.warnings) != 0 {
		t.Errorf("--token-file: %v %q %q", err, s.token, s.warnings)
	}
	t.Setenv("RAFTQ_AUTH_TOKEN_FILE", file)
	if _, s, err = load(newLoader(), ca); err != nil || s.token != "t0ken" {
		t.Errorf("RAFTQ_AUTH_TOKEN_FILE: %v %q", err, s.token)
	}
	t.Setenv("RAFTQ_AUTH_TOKEN_FILE", "")
	t.Setenv("RAFTQ_AUTH_TOKEN", "t0ken")
	if _, s, err = load(newLoader(), ca); err != nil || s.token != "t0ken" || len(s.warnings) != 0 {
		t.Errorf("RAFTQ_AUTH_TOKEN: %v %q %q", err, s.token, s.warnings)
	}
}

// TestEtcdNeedsHTTPSWithTLS: with TLS on, workerd refuses an http://
// etcd endpoint (exit 2, naming the key) instead of reading the brokers'
// registrations in clear.
func TestEtcdNeedsHTTPSWithTLS(t *testing.T) {
	cleanEnv(t)
	pki, err := certgen.NewDev(t.TempDir(), "test CA", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"--tls-ca", pki.CAFile(), "--etcd", "http://127.0.0.1:2379"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), `etcd.endpoints (flag --etcd, env RAFTQ_ETCD_ENDPOINTS): "http://127.0.0.1:2379" is not an https:// URL, and TLS is on`) {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
}
