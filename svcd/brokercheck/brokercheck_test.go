package brokercheck_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/testcluster"
	"github.com/raftq/raftq/internal/tlsutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/server"
	"github.com/raftq/raftq/svcd/store"
)

// Tokens of the secure cluster and svcd (the same tokens file).
const (
	ordersWorker  = "orders-worker-token"  // worker, orders.*
	billingWorker = "billing-worker-token" // worker, billing and billing.*
	ordersReader  = "orders-reader-token"  // producer, orders.*
	adminToken    = "admin-token"
)

type env struct {
	c     *testcluster.Cluster
	svcd  *server.Server
	pki   *certgen.Dev
	tls   *client.Options
	admin *client.Client
}

// newEnv starts a 3-node cluster with TLS and auth on (real Raft over TCP
// on disk) and a svcd with TLS and the same tokens that verifies every
// result with the cluster.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	pki, err := certgen.NewDev(filepath.Join(dir, "pki"), "test CA", []string{"n1", "n2", "n3"})
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf(`tokens:
  - {name: runner, sha256: %s, roles: [worker], queues: ["orders.*"]}
  - {name: biller, sha256: %s, roles: [worker], queues: ["billing", "billing.*"]}
  - {name: reader, sha256: %s, roles: [producer], queues: ["orders.*"]}
  - {name: ops, sha256: %s, roles: [admin]}
`, auth.HashToken(ordersWorker), auth.HashToken(billingWorker), auth.HashToken(ordersReader), auth.HashToken(adminToken))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, 3, testcluster.Secure(pki, tokens))
	srv, err := server.New(context.Background(), server.Config{
		ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: "sqlite", DataDir: filepath.Join(dir, "svcd"),
		ReadyInterval: 50 * time.Millisecond,
		TLS:           tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile("svcd"), Key: pki.KeyFile("svcd")},
		Auth:          auth.Config{TokensFile: tokens},
		Brokers:       server.BrokerCheck{Addrs: c.Addrs()},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	e := &env{c: c, svcd: srv, pki: pki}
	e.admin = e.broker(t, adminToken)
	return e
}

func (e *env) clientTLS(t *testing.T) *client.Options {
	t.Helper()
	cfg, err := client.LoadTLS(e.pki.CAFile(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return &client.Options{TLS: cfg, CallTimeout: 20 * time.Second}
}

// broker is a broker client as token.
func (e *env) broker(t *testing.T, token string) *client.Client {
	t.Helper()
	o := *e.clientTLS(t)
	o.Token = token
	cl, err := client.New(e.c.Addrs(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// results is a svcd client as token.
func (e *env) results(t *testing.T, token string) *results.Client {
	t.Helper()
	rc, err := results.Dial(e.svcd.GRPCAddr(), results.WithTLS(e.clientTLS(t).TLS), results.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// lease enqueues a job in queue (as admin) and leases it as token.
func (e *env) lease(t *testing.T, ctx context.Context, queue, token string) *raftqv1.Job {
	t.Helper()
	id, _, err := e.admin.EnqueueOne(ctx, queue, "echo", []byte("pay me"), client.WithMaxAttempts(5))
	if err != nil {
		t.Fatal(err)
	}
	return e.fetch(t, ctx, id, queue, token)
}

func (e *env) fetch(t *testing.T, ctx context.Context, id, queue, token string) *raftqv1.Job {
	t.Helper()
	jobs, err := e.broker(t, token).Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{queue}, MaxJobs: 1, MaxWait: durationpb.New(20 * time.Second)})
	if err != nil || len(jobs) != 1 || jobs[0].GetId() != id {
		t.Fatalf("fetch %s from %s: %v %v", id, queue, jobs, err)
	}
	return jobs[0]
}

// nothingStored fails unless svcd holds no result and no attempt for id.
func (e *env) nothingStored(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	if r, err := e.svcd.Store().GetResult(ctx, id); err == nil {
		t.Fatalf("a result was stored for %s: %+v", id, r)
	}
	if a, err := e.svcd.Store().Attempts(ctx, id); !errors.Is(err, store.ErrNotFound) || len(a) != 0 {
		t.Fatalf("attempts of %s: %v %v", id, a, err)
	}
}

func result(j *raftqv1.Job, queue string, token uint64) results.Result {
	return results.Result{JobID: j.GetId(), Queue: queue, Type: j.GetType(), LeaseToken: token, WorkerID: "w",
		Attempt: j.GetAttempts(), Status: results.StatusSucceeded, Output: []byte("forged")}
}

func wantCode(t *testing.T, what string, err error, code codes.Code, text string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(fmt.Sprint(err), text) {
		t.Fatalf("%s: got %v (%v), want %v containing %q", what, status.Code(err), err, code, text)
	}
}

// TestForgedResultRefused is issue 12's attack, end to end with auth on:
// a worker token for orders.* stores a "result" for a billing job by
// claiming queue orders.eu and lease token 2^63-1. svcd asks the broker
// leader (as the caller) for the job, and refuses: nothing is written,
// over gRPC or HTTP, and the real billing worker's result is stored
// afterwards (before the fix the forgery was stored and the real worker
// was refused as stale). Then: a queue claim that is not the job's, a
// token above the broker's newest (forged even by the job's own queue's
// worker), a job the broker does not know, and a token of a lease the
// broker replaced are each refused with nothing written; the current
// lease's result goes through HTTP with the caller's token forwarded.
func TestForgedResultRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runner, biller := e.results(t, ordersWorker), e.results(t, billingWorker)

	job := e.lease(t, ctx, "billing", billingWorker)
	forged := result(job, "orders.eu", math.MaxInt64)
	_, err := runner.StoreResult(ctx, forged)
	wantCode(t, "forged result (gRPC)", err, codes.PermissionDenied, "billing")
	// The same over HTTP (Bearer; the token goes on to the broker).
	body := fmt.Sprintf(`{"job_id":%q,"queue":"orders.eu","lease_token":%d,"status":"succeeded","output":"Zm9yZ2Vk"}`, job.GetId(), uint64(math.MaxInt64))
	if code, text := e.httpStore(t, ordersWorker, body); code != http.StatusForbidden {
		t.Fatalf("forged result over HTTP: %d %s", code, text)
	}
	// With the real token, still not the caller's queue.
	_, err = runner.StoreResult(ctx, result(job, "orders.eu", job.GetLeaseToken()))
	wantCode(t, "another queue's job with its real token", err, codes.PermissionDenied, "billing")
	e.nothingStored(t, ctx, job.GetId())

	// The billing worker itself: a queue that is not the job's, though it
	// may write it; a token the broker never issued.
	_, err = biller.StoreResult(ctx, result(job, "billing.eu", job.GetLeaseToken()))
	wantCode(t, "wrong queue claim", err, codes.InvalidArgument, `job `+job.GetId()+` in queue "billing"`)
	_, err = biller.StoreResult(ctx, result(job, "billing", job.GetLeaseToken()+1))
	wantCode(t, "future token", err, codes.PermissionDenied, "never issued")
	_, err = biller.StoreResult(ctx, result(&raftqv1.Job{Id: "no-such-job"}, "billing", 7))
	if !errors.Is(err, results.ErrUnknownJob) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unknown job: %v", err)
	}
	e.nothingStored(t, ctx, job.GetId())
	e.nothingStored(t, ctx, "no-such-job")

	// The real worker's result is stored, and the producer of orders.*
	// cannot read it.
	out, err := biller.StoreResult(ctx, result(job, "billing", job.GetLeaseToken()))
	if err != nil || out != results.OutcomeStored {
		t.Fatalf("real worker's result: %v %v", out, err)
	}
	got, err := e.results(t, adminToken).GetResult(ctx, job.GetId())
	if err != nil || got.Queue != "billing" || got.LeaseToken != job.GetLeaseToken() || string(got.Output) != "forged" {
		t.Fatalf("stored: %+v %v", got, err)
	}
	if _, err := e.results(t, ordersReader).GetResult(ctx, job.GetId()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("orders.* producer reading the billing result: %v", err)
	}

	// Stale: the first lease is nacked and the job leased again; the
	// first token is refused as stale (the worker drops, never acks).
	stale := e.lease(t, ctx, "billing", billingWorker)
	if _, err := e.broker(t, billingWorker).Nack(ctx, &raftqv1.NackRequest{JobId: stale.GetId(), LeaseToken: stale.GetLeaseToken(),
		Error: "try again", RetryAfter: durationpb.New(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	again := e.fetch(t, ctx, stale.GetId(), "billing", billingWorker)
	if again.GetLeaseToken() <= stale.GetLeaseToken() {
		t.Fatalf("second lease %d after %d", again.GetLeaseToken(), stale.GetLeaseToken())
	}
	_, err = biller.StoreResult(ctx, result(stale, "billing", stale.GetLeaseToken()))
	if !errors.Is(err, results.ErrStaleToken) {
		t.Fatalf("replaced lease's token: %v", err)
	}
	e.nothingStored(t, ctx, stale.GetId())
	// The current lease over HTTP: the caller's token reaches the broker.
	body = fmt.Sprintf(`{"job_id":%q,"queue":"billing","lease_token":%d,"status":"succeeded"}`, again.GetId(), again.GetLeaseToken())
	if code, text := e.httpStore(t, billingWorker, body); code != http.StatusOK || !strings.Contains(text, "stored") {
		t.Fatalf("current lease over HTTP: %d %s", code, text)
	}
}

// httpStore POSTs a result to svcd's HTTP API as token.
func (e *env) httpStore(t *testing.T, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "https://"+e.svcd.HTTPAddr()+"/v1/results", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: e.clientTLS(t).TLS}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestBrokerUnreachable: with verification on and no broker answering,
// StoreResult is UNAVAILABLE (the worker retries; it must not ack) and
// nothing is written.
func TestBrokerUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	srv, err := server.New(context.Background(), server.Config{
		ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: "sqlite", DataDir: t.TempDir(),
		Brokers: server.BrokerCheck{Addrs: []string{dead}, Timeout: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown(context.Background())
	cc, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = raftqv1.NewResultsClient(cc).StoreResult(ctx, &raftqv1.StoreResultRequest{
		JobId: "j1", Queue: "q", LeaseToken: 3, Status: raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED})
	wantCode(t, "broker down", err, codes.Unavailable, "broker unavailable")
	if _, err := srv.Store().GetResult(ctx, "j1"); err == nil {
		t.Fatal("a result was stored without verification")
	}
}

// TestNoBrokersRefused: a svcd with neither brokers nor verification
// explicitly disabled does not start.
func TestNoBrokersRefused(t *testing.T) {
	_, err := server.New(context.Background(), server.Config{ListenGRPC: "127.0.0.1:0", ListenHTTP: "127.0.0.1:0", DB: "sqlite", DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no brokers configured") {
		t.Fatalf("svcd without brokers: %v", err)
	}
}
