package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftq/raftq/brokerd/daemon"
	"github.com/raftq/raftq/brokerd/etcdnode"
	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/discovery/etcdresolver"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/testutil"
	"github.com/raftq/raftq/internal/tlsutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/server"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// TestMain runs workerd's main instead of the tests in a process that
// testutil.Child started: a real workerd process without another binary.
func TestMain(m *testing.M) {
	testutil.RunChild("workerd", main)
	os.Exit(m.Run())
}

// child starts workerd with args as a process whose environment has no
// RAFTQ_* variable of the developer's: it sees exactly args.
func child(t *testing.T, args ...string) (*exec.Cmd, *testutil.Buffer) {
	t.Helper()
	cmd := testutil.Child("workerd", args...)
	stderr := &testutil.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, stderr
}

// A real process refuses an invalid configuration with status 2 and one
// line per bad key, before starting anything.
func TestInvalidConfigExitStatus(t *testing.T) {
	cmd, stderr := child(t, "--queues", "default:0", "--log-level", "loud")
	err := cmd.Wait()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2; stderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{
		"workerd: invalid configuration:\n",
		"\n  queues (flag --queues, env RAFTQ_QUEUES): queue \"default:0\": concurrency must be a positive integer (set by flag)\n",
		"\n  log.level (flag --log-level, env RAFTQ_LOG_LEVEL): \"loud\": want debug, info, warn or error (set by flag)\n",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "{") {
		t.Errorf("workerd logged (started something) before refusing its configuration:\n%s", stderr.String())
	}
}

// workerd given nothing but --etcd finds the brokers (registered in etcd by
// brokerd) and svcd (registered by svcd) through etcd, runs the jobs
// enqueued on the default queue, stores each outcome in svcd, and exits
// cleanly on SIGTERM.
func TestOnlyEtcd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcd := etcdtest.New(t)
	cli := etcd.Client()
	// The default prefix: workerd gets no --etcd-prefix.
	prefix := discovery.DefaultPrefix

	c := testcluster.New(t, 3, nil, func(cfg *daemon.Config) {
		cfg.Etcd = etcdnode.Config{Endpoints: etcd.Endpoints(), Prefix: prefix}
	})

	// svcd verifies every result with the brokers it finds through etcd
	// too.
	srv := svcdtest.StartWith(t, server.Config{DB: "sqlite", DataDir: t.TempDir(), ReadyInterval: 50 * time.Millisecond,
		Brokers: server.BrokerCheck{Addrs: []string{etcdresolver.BrokersTarget(prefix)}, DialOptions: etcdresolver.BrokerDialOptions(cli)}})
	reg, err := discovery.Register(cli, prefix, discovery.ServiceSvcd, discovery.Instance{ID: "s1", Addr: srv.GRPCAddr()},
		discovery.RegisterOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())

	cl := c.Client()
	const n = 20
	want := map[string]string{}
	var specs []*raftqv1.JobSpec
	for i := 0; i < n; i++ {
		specs = append(specs, &raftqv1.JobSpec{Queue: "default", Type: "echo", Payload: []byte(fmt.Sprintf("job-%d", i))})
	}
	res, err := cl.Enqueue(ctx, specs...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want[r.JobId] = string(specs[i].Payload)
	}

	cmd, stderr := child(t, "--etcd", etcd.Endpoint())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitSucceeded(t, ctx, cl, n, done, stderr)

	// Every outcome is in the svcd workerd found through etcd.
	rc, err := results.Dial(srv.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for id, payload := range want {
		r, err := rc.GetResult(ctx, id)
		if err != nil || r.Status != results.StatusSucceeded || string(r.Output) != payload {
			t.Errorf("result of %s: %+v %v, want succeeded with output %q", id, r, err, payload)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; log:\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("workerd did not exit after SIGTERM; log:\n%s", stderr.String())
	}
	for _, want := range []string{`"msg":"discovery through etcd"`, `"brokers":["etcd:///raftq/brokers"]`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, stderr.String())
		}
	}
}

// waitSucceeded waits until n jobs of queue "default" succeeded, failing
// if the workerd child exits first (done) or ctx ends.
func waitSucceeded(t *testing.T, ctx context.Context, cl *client.Client, n int64, done <-chan error, stderr *testutil.Buffer) {
	t.Helper()
	for {
		qs, err := cl.QueueStats(ctx, "default")
		if err != nil {
			t.Fatalf("queue stats: %v; workerd log:\n%s", err, stderr.String())
		}
		if len(qs) == 1 && qs[0].Succeeded == n {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("workerd exited: %v; log:\n%s", err, stderr.String())
		case <-ctx.Done():
			t.Fatalf("jobs not all done (%v); workerd log:\n%s", qs, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// A real workerd reads its bearer token from --token-file (with a
// trailing newline, as `make certs` and secret mounts write it) and works
// a secure cluster (TLS, auth on) and a secure svcd that verifies every
// result with the brokers as that worker; nothing warns about a token on
// the command line.
func TestTokenFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf("tokens:\n  - {name: runner, sha256: %s, roles: [worker], queues: [default]}\n  - {name: ops, sha256: %s, roles: [admin]}\n",
		auth.HashToken("worker-secret"), auth.HashToken("admin-secret"))), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "worker.token")
	if err := os.WriteFile(tokenFile, []byte("worker-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, 1, testcluster.Secure(pki, tokens))
	srv := svcdtest.StartWith(t, server.Config{DB: "sqlite", DataDir: filepath.Join(dir, "svcd"),
		TLS:     tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile("svcd"), Key: pki.KeyFile("svcd")},
		Auth:    auth.Config{TokensFile: tokens},
		Brokers: server.BrokerCheck{Addrs: c.Addrs()}})
	tlsCfg, err := client.LoadTLS(pki.CAFile(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(c.Addrs(), client.Options{TLS: tlsCfg, Token: "admin-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 5
	var ids []string
	for i := 0; i < n; i++ {
		id, _, err := cl.EnqueueOne(ctx, "default", "echo", []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}

	cmd, stderr := child(t, "--brokers", strings.Join(c.Addrs(), ","), "--svcd", srv.GRPCAddr(), "--queues", "default:2",
		"--tls-ca", pki.CAFile(), "--token-file", tokenFile, "--poll-wait", "1s")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitSucceeded(t, ctx, cl, n, done, stderr)
	for _, id := range ids {
		if r, err := srv.Store().GetResult(ctx, id); err != nil || r.Queue != "default" {
			t.Errorf("result of %s: %+v %v", id, r, err)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-done
	if strings.Contains(stderr.String(), "command line") {
		t.Errorf("token-file run warned about a command-line token:\n%s", stderr.String())
	}
}
