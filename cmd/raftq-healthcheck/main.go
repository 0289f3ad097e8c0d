// Command raftq-healthcheck is the HEALTHCHECK of raftq's container images,
// which are built FROM scratch and so have no shell, curl or grpc_health_probe.
// It makes one check and exits 0 when healthy, 1 when not, 2 on bad usage:
//
//	raftq-healthcheck grpc [ADDR [SERVICE]]   # grpc.health.v1 Check; SERVING is healthy
//	raftq-healthcheck http [URL]              # GET; any 2xx is healthy
//
// ADDR defaults to $RAFTQ_HEALTH_ADDR, then 127.0.0.1:7101 (brokerd);
// SERVICE to $RAFTQ_HEALTH_SERVICE, then "" (the server as a whole); URL to
// $RAFTQ_HEALTH_URL. The whole check gives up after $RAFTQ_HEALTH_TIMEOUT
// (a Go duration, default 3s).
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/raftq/raftq/internal/version"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "raftq-healthcheck")
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || len(args) > 3 {
		fmt.Fprintln(stderr, "usage: raftq-healthcheck grpc [ADDR [SERVICE]] | http [URL]")
		return 2
	}
	timeout, err := time.ParseDuration(env("RAFTQ_HEALTH_TIMEOUT", "3s"))
	if err != nil {
		fmt.Fprintln(stderr, "raftq-healthcheck: RAFTQ_HEALTH_TIMEOUT:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	arg := func(i int, def string) string {
		if len(args) > i {
			return args[i]
		}
		return def
	}
	switch args[0] {
	case "grpc":
		addr := arg(1, env("RAFTQ_HEALTH_ADDR", "127.0.0.1:7101"))
		service := arg(2, os.Getenv("RAFTQ_HEALTH_SERVICE"))
		st, err := checkGRPC(ctx, addr, service)
		if err != nil {
			fmt.Fprintf(stderr, "raftq-healthcheck: %s %q: %v\n", addr, service, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s %q: %s\n", addr, service, st)
		if st != healthpb.HealthCheckResponse_SERVING {
			return 1
		}
		return 0
	case "http":
		if len(args) > 2 {
			fmt.Fprintln(stderr, "usage: raftq-healthcheck http [URL]")
			return 2
		}
		url := arg(1, os.Getenv("RAFTQ_HEALTH_URL"))
		if url == "" {
			fmt.Fprintln(stderr, "raftq-healthcheck: http: no URL (argument or RAFTQ_HEALTH_URL)")
			return 2
		}
		code, err := checkHTTP(ctx, url)
		if err != nil {
			fmt.Fprintf(stderr, "raftq-healthcheck: %s: %v\n", url, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %d\n", url, code)
		if code < 200 || code > 299 {
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "raftq-healthcheck: unknown check %q (grpc or http)\n", args[0])
	return 2
}

// checkGRPC asks the standard gRPC health service at addr about service.
func checkGRPC(ctx context.Context, addr, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	res, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(true))
	if err != nil {
		return 0, err
	}
	return res.GetStatus(), nil
}

// checkHTTP GETs url and returns the status code.
func checkHTTP(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	return res.StatusCode, nil
}
