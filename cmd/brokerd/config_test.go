package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/testutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Invalid configuration: status 2, one line per problem naming the key,
// and nothing started (the data dir is never created).
func TestInvalidConfigExit2(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cases := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{args: []string{"--data-dir", dir}, want: []string{"node.id (flag --id, env RAFTQ_NODE_ID): required"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--retention", "1 day"}, want: []string{"invalid argument \"1 day\" for \"--retention\""}},
		{args: []string{"--id", "n1", "--data-dir", dir}, env: map[string]string{"RAFTQ_DEFAULTS_LEASE_DURATION": "-1s"},
			want: []string{"defaults.lease_duration (flag --default-lease, env RAFTQ_DEFAULTS_LEASE_DURATION): must be positive (set by env)"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--bootstrap-expect", "3"},
			want: []string{"bootstrap.peers (flag --peers, env RAFTQ_BOOTSTRAP_PEERS): bootstrap.expect is 3: list the peers, or set etcd.endpoints"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--bootstrap-expect", "2", "--peers", "n1=a:1,n2=b:1,n3=c:1"},
			want: []string{"bootstrap.peers", "bootstrap.expect is 2 but 3 peers are listed"}},
		{args: []string{"--id", "n9", "--data-dir", dir, "--bootstrap-expect", "1", "--peers", "n1=a:1"},
			want: []string{"this node (n9) is not in the list"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--etcd", "127.0.0.1:2379", "--etcd-prefix", "/raftq/"},
			want: []string{"etcd.prefix (flag --etcd-prefix, env RAFTQ_ETCD_PREFIX): cluster prefix \"/raftq/\""}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--log-level", "loud"}, want: []string{"log.level", "want debug, info, warn or error"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--etcd-lease-ttl", "1s"}, want: []string{"etcd.lease_ttl", "at least 2s"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "stray"}, want: []string{"unexpected [\"stray\"]"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--raft-log-store", "rocks"}, want: []string{"raft.log_store", `want "wal" or "bolt"`}},
		{args: []string{"--id", "a/b", "--data-dir", dir}, want: []string{"node.id", "must not contain"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--xds-ip-only"}, want: []string{"xds.ip_only (flag --xds-ip-only, env RAFTQ_XDS_IP_ONLY): requires xds.enabled"}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--xds", "--xds-ip-only", "--grpc-advertise", "brokerd1:7101"},
			want: []string{`grpc advertise "brokerd1:7101": xds ip only needs an IP address`}},
		{args: []string{"--id", "n1", "--data-dir", dir, "--default-initial-backoff", "1h", "--default-max-backoff", "1m"},
			want: []string{"defaults.max_backoff (flag --default-max-backoff, env RAFTQ_DEFAULTS_MAX_BACKOFF): must be at least defaults.initial_backoff (1h0m0s)"}},
	}
	for _, c := range cases {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr:\n%s", c.args, code, errb.String())
		}
		for _, w := range c.want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%v: stderr lacks %q:\n%s", c.args, w, errb.String())
			}
		}
		for k := range c.env {
			os.Unsetenv(k)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("data dir created by an invalid configuration: %v", err)
	}
}

// `brokerd config` prints every key with its source, redacts secrets, and
// honours defaults < file < env < flags.
func TestConfigCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "brokerd.yaml")
	os.WriteFile(file, []byte("node:\n  id: from-file\n  data_dir: /var/lib/raftq\nretention: 1h\netcd:\n  endpoints: http://e1:2379\n  password: hunter2\n"), 0o600)
	t.Setenv("RAFTQ_RETENTION", "2h")
	t.Setenv("RAFTQ_ETCD_USERNAME", "raftq")
	var out, errb bytes.Buffer
	if code := run([]string{"config", "--config", file, "--grpc-addr", "10.0.0.1:7101"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{
		"id: from-file # file " + file,
		"retention: 2h0m0s # env RAFTQ_RETENTION",
		"addr: 10.0.0.1:7101 # flag --grpc-addr",
		"password: REDACTED # file",
		"username: raftq # env RAFTQ_ETCD_USERNAME",
		"lease_duration: 30s # default",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "hunter2") {
		t.Fatalf("secret printed:\n%s", s)
	}
	// An unknown key in the file is an error naming it.
	os.WriteFile(file, []byte("node:\n  idd: x\n"), 0o600)
	errb.Reset()
	if code := run([]string{"config", "--config", file}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "node.idd: unknown key in") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// TestMain runs brokerd instead of the tests in a process that
// testutil.Child started: the process tests' brokers.
func TestMain(m *testing.M) {
	testutil.RunChild("brokerd", func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) })
	os.Exit(m.Run())
}

type brokerProc struct {
	id, grpc string
	cmd      *exec.Cmd
	log      *bytes.Buffer
	done     chan error
}

func status(ctx context.Context, addr string) (*raftqv1.StatusResponse, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	return raftqv1.NewClusterClient(cc).Status(ctx, &raftqv1.StatusRequest{})
}

func voterCount(st *raftqv1.StatusResponse) int {
	n := 0
	for _, m := range st.Members {
		if m.Voter {
			n++
		}
	}
	return n
}

// Real processes started with identical flags (--etcd, --bootstrap-expect
// 3) form one cluster through etcd; SIGTERM with --leave-on-terminate
// removes the node from the voters and exits 0; `brokerd leave` removes
// another through the brokers found in etcd; leaving an unknown node fails.
func TestProcessesBootstrapAndLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	s := etcdtest.New(t)
	prefix := s.Prefix("proc")
	dir := t.TempDir()
	var procs []*brokerProc
	for i := 1; i <= 3; i++ {
		p := &brokerProc{id: fmt.Sprintf("n%d", i), grpc: freeport.T(t), log: &bytes.Buffer{}, done: make(chan error, 1)}
		args := []string{"--id", p.id, "--data-dir", filepath.Join(dir, p.id), "--grpc-addr", p.grpc, "--raft-addr", freeport.T(t),
			"--etcd", s.Endpoint(), "--etcd-prefix", prefix, "--etcd-lease-ttl", "2s", "--bootstrap-expect", "3",
			"--leave-on-terminate", "--raft-heartbeat-timeout", "300ms", "--raft-election-timeout", "300ms",
			"--raft-leader-lease-timeout", "150ms", "--log-level", "info"}
		p.cmd = testutil.Child("brokerd", args...)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() { p.cmd.Process.Kill() })
		procs = append(procs, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// waitVoters waits until the node at addr sees want voters and a leader.
	waitVoters := func(addr string, want int) *raftqv1.StatusResponse {
		t.Helper()
		for ctx.Err() == nil {
			sctx, c := context.WithTimeout(ctx, time.Second)
			st, err := status(sctx, addr)
			c()
			if err == nil && voterCount(st) == want && st.LeaderId != "" {
				return st
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, p := range procs {
			t.Logf("%s log:\n%s", p.id, p.log.String())
		}
		t.Fatalf("%s never saw %d voters", addr, want)
		return nil
	}
	for _, p := range procs {
		waitVoters(p.grpc, 3)
	}

	// SIGTERM with --leave-on-terminate: a clean exit, one voter fewer,
	// its registration gone.
	victim := procs[0]
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-victim.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, victim.log.String())
		}
	case <-ctx.Done():
		t.Fatal("no exit after SIGTERM")
	}
	if !strings.Contains(victim.log.String(), "left the cluster") {
		t.Fatalf("no leave in the log:\n%s", victim.log.String())
	}
	waitVoters(procs[1].grpc, 2)
	cli := s.Client()
	s.WaitKey(cli, discovery.InstanceKey(prefix, discovery.ServiceBrokers, victim.id), false, 10*time.Second)

	// `brokerd leave` of another node, finding the brokers through etcd.
	var out, errb bytes.Buffer
	if code := run([]string{"leave", "--id", procs[2].id, "--etcd", s.Endpoint(), "--etcd-prefix", prefix}, &out, &errb); code != 0 {
		t.Fatalf("leave: exit %d: %s", code, errb.String())
	}
	waitVoters(procs[1].grpc, 1)
	// Leaving a node that is not a member fails definitely.
	errb.Reset()
	if code := run([]string{"leave", "--id", "nosuch", "--brokers", procs[1].grpc, "--timeout", "10s"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no member nosuch") {
		t.Fatalf("leave of unknown node: exit %d: %s", code, errb.String())
	}
}
