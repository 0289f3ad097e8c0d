package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	addr := lis.Addr().String()

	t.Setenv("RAFTQ_HEALTH_TIMEOUT", "2s")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"grpc", addr}, 0},
		{[]string{"grpc", addr, "up"}, 0},
		{[]string{"grpc", addr, "down"}, 1},
		{[]string{"grpc", addr, "unknown"}, 1},
		{[]string{"bogus"}, 2},
		{nil, 2},
	} {
		var out, errb bytes.Buffer
		if got := run(tc.args, &out, &errb); got != tc.want {
			t.Errorf("%v: exit %d, want %d (%s%s)", tc.args, got, tc.want, out.String(), errb.String())
		}
	}

	// The address and service may come from the environment.
	t.Setenv("RAFTQ_HEALTH_ADDR", addr)
	t.Setenv("RAFTQ_HEALTH_SERVICE", "down")
	if got := run([]string{"grpc"}, &bytes.Buffer{}, &bytes.Buffer{}); got != 1 {
		t.Errorf("grpc from env: exit %d, want 1", got)
	}
}

func TestGRPCNothingListening(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	t.Setenv("RAFTQ_HEALTH_TIMEOUT", "300ms")
	if got := run([]string{"grpc", addr}, &bytes.Buffer{}, &bytes.Buffer{}); got != 1 {
		t.Errorf("exit %d, want 1", got)
	}
}

func TestHTTP(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(ts.Close)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"http", ts.URL + "/health"}, 0},
		{[]string{"http", ts.URL + "/other"}, 1},
		{[]string{"http"}, 2},
	} {
		var out, errb bytes.Buffer
		if got := run(tc.args, &out, &errb); got != tc.want {
			t.Errorf("%v: exit %d, want %d (%s%s)", tc.args, got, tc.want, out.String(), errb.String())
		}
	}
}
