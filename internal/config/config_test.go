package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testKeys() []Key {
	return []Key{
		{Name: "node.id", Flag: "id", Kind: String, Required: true, Usage: "id"},
		{Name: "grpc.addr", Flag: "grpc-addr", Kind: String, Default: "127.0.0.1:7101", Usage: "addr"},
		{Name: "retention", Flag: "retention", Kind: Duration, Default: 24 * time.Hour, Usage: "retention"},
		{Name: "bootstrap.expect", Flag: "bootstrap-expect", Kind: Int, Default: 0, Usage: "n",
			Check: func(v any) error {
				if v.(int) < 0 {
					return errors.New("must not be negative")
				}
				return nil
			}},
		{Name: "forward", Flag: "forward", Kind: Bool, Default: true, Usage: "fwd"},
		{Name: "etcd.endpoints", Flag: "etcd", Kind: List, Usage: "etcd"},
		{Name: "etcd.password", Flag: "etcd-password", Kind: String, Secret: true, Usage: "pw"},
		{Name: "db.dsn", Flag: "dsn", Kind: String, Redact: RedactDSN, Usage: "dsn"},
		{Name: "rate", Flag: "rate", Kind: Float, Default: 0.0, Usage: "rate"},
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Each layer overrides the one below it: default < file < env < flag.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
node:
  id: from-file
grpc:
  addr: 127.0.0.1:1
retention: 1h
etcd:
  endpoints: [a:1, b:2]
`)
	t.Setenv("RAFTQ_GRPC_ADDR", "127.0.0.1:2")
	t.Setenv("RAFTQ_RETENTION", "2h")
	t.Setenv("RAFTQ_FORWARD", "false")
	l := New("brokerd", testKeys())
	v, err := l.Load([]string{"--config", file, "--retention", "3h"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key  string
		got  any
		want any
		src  Source
	}{
		{"node.id", v.String("node.id"), "from-file", FromFile},
		{"grpc.addr", v.String("grpc.addr"), "127.0.0.1:2", FromEnv},
		{"retention", v.Duration("retention"), 3 * time.Hour, FromFlag},
		{"forward", v.Bool("forward"), false, FromEnv},
		{"bootstrap.expect", v.Int("bootstrap.expect"), 0, FromDefault},
		{"etcd.endpoints", strings.Join(v.List("etcd.endpoints"), ","), "a:1,b:2", FromFile},
	}
	for _, c := range checks {
		if c.got != c.want || v.Source(c.key) != c.src {
			t.Errorf("%s = %v from %s, want %v from %s", c.key, c.got, v.Source(c.key), c.want, c.src)
		}
	}
}

// The environment sets lists as comma-separated strings; RAFTQ_CONFIG names
// the file when --config is not given.
func TestEnvListAndConfigEnv(t *testing.T) {
	file := writeFile(t, "node:\n  id: x\n")
	t.Setenv("RAFTQ_CONFIG", file)
	t.Setenv("RAFTQ_ETCD_ENDPOINTS", "127.0.0.1:2379, 127.0.0.1:2479")
	v, err := New("brokerd", testKeys()).Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.List("etcd.endpoints"); len(got) != 2 || got[1] != "127.0.0.1:2479" {
		t.Fatalf("endpoints %q", got)
	}
	if v.String("node.id") != "x" || v.File != file {
		t.Fatalf("file not read: id %q file %q", v.String("node.id"), v.File)
	}
}

// Every invalid setting is reported, each naming its key, flag and
// variable and the reason.
func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want []string
	}{
		{name: "required", args: nil, want: []string{"node.id (flag --id, env RAFTQ_NODE_ID): required"}},
		{name: "bad duration flag", args: []string{"--id", "a", "--retention", "soon"}, want: []string{"flags", "retention"}},
		{name: "bad duration env", env: map[string]string{"RAFTQ_RETENTION": "soon"}, args: []string{"--id", "a"},
			want: []string{`retention (flag --retention, env RAFTQ_RETENTION): "soon" is not a duration`, "set by env"}},
		{name: "bare number duration in file", file: "retention: 30\n", args: []string{"--id", "a"},
			want: []string{"retention", "needs a unit", "set by file"}},
		{name: "check", args: []string{"--id", "a", "--bootstrap-expect", "-1"},
			want: []string{"bootstrap.expect (flag --bootstrap-expect, env RAFTQ_BOOTSTRAP_EXPECT): must not be negative (set by flag)"}},
		{name: "int from env", env: map[string]string{"RAFTQ_BOOTSTRAP_EXPECT": "three"}, args: []string{"--id", "a"},
			want: []string{`bootstrap.expect`, `"three" is not an integer`}},
		{name: "unknown file key", file: "node:\n  idd: x\n", args: []string{"--id", "a"},
			want: []string{"node.idd: unknown key in"}},
		{name: "map for string", file: "grpc:\n  addr: {a: 1}\n", args: []string{"--id", "a"},
			want: []string{"grpc.addr", "want a string"}},
		{name: "two at once", file: "retention: x\nnode:\n  idd: 1\n",
			want: []string{"node.idd: unknown key", "retention (", "node.id (flag --id"}},
		{name: "unknown flag", args: []string{"--nope"}, want: []string{"unknown flag: --nope"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			args := c.args
			if c.file != "" {
				args = append(args, "--config", writeFile(t, c.file))
			}
			_, err := New("brokerd", testKeys()).Load(args)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := New("brokerd", testKeys()).Load([]string{"--id", "a", "--config", "/nonexistent/x.yaml"})
	if err == nil || !strings.Contains(err.Error(), "config (flag --config, env RAFTQ_CONFIG): read /nonexistent/x.yaml") {
		t.Fatalf("err %v", err)
	}
}

// Print shows every key with its source, hides secrets, and its output
// loads back to the same values.
func TestPrintRedactsAndRoundTrips(t *testing.T) {
	t.Setenv("RAFTQ_ETCD_PASSWORD", "hunter2")
	l := New("brokerd", testKeys())
	v, err := l.Load([]string{"--id", "n1", "--dsn", "host=db user=u password=s3cret dbname=raftq", "--etcd", "e1:2379,e2:2379", "--rate", "2.5"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := v.Print(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"hunter2", "s3cret"} {
		if strings.Contains(out, bad) {
			t.Fatalf("secret %q printed:\n%s", bad, out)
		}
	}
	for _, want := range []string{"password: REDACTED # env RAFTQ_ETCD_PASSWORD", "password=REDACTED", "id: n1 # flag --id",
		"endpoints: ['e1:2379', 'e2:2379'] # flag --etcd", "retention: 24h0m0s # default", "rate: 2.5"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Feed it back (secrets are redacted, so drop them from the check).
	os.Unsetenv("RAFTQ_ETCD_PASSWORD")
	back, err := New("brokerd", testKeys()).Load([]string{"--config", writeFile(t, out)})
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out)
	}
	if back.String("node.id") != "n1" || back.Duration("retention") != 24*time.Hour || len(back.List("etcd.endpoints")) != 2 || back.Float("rate") != 2.5 {
		t.Fatalf("round trip changed values:\n%s", out)
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"host=h user=u password=p dbname=d":   "host=h user=u password=REDACTED dbname=d",
		"postgres://u:p@h:5432/d?sslmode=off": "postgres://u:REDACTED@h:5432/d?sslmode=off",
		"postgres://u@h/d":                    "postgres://u@h/d",
		"host=h":                              "host=h",
	} {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckEtcdEndpoints: with TLS on, only https:// endpoints pass, and
// the error names the key, its flag and environment variable.
func TestCheckEtcdEndpoints(t *testing.T) {
	l := New("test", []Key{{Name: "etcd.endpoints", Flag: "etcd", Kind: List}})
	if err := l.CheckEtcdEndpoints("etcd.endpoints", []string{"http://127.0.0.1:2379"}, false); err != nil {
		t.Fatalf("plaintext profile: %v", err)
	}
	if err := l.CheckEtcdEndpoints("etcd.endpoints", []string{"https://a:2379", "https://b:2379"}, true); err != nil {
		t.Fatalf("https: %v", err)
	}
	for _, bad := range []string{"http://127.0.0.1:2379", "127.0.0.1:2379", "unix:///tmp/etcd", "https://"} {
		err := l.CheckEtcdEndpoints("etcd.endpoints", []string{"https://ok:1", bad}, true)
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != "etcd.endpoints" || !strings.Contains(err.Error(), "--etcd") || !strings.Contains(err.Error(), "RAFTQ_ETCD_ENDPOINTS") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
