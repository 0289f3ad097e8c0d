package envoy_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	// Every extension the configs name by type URL must be registered for
	// protojson to resolve its "@type".
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_stats/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	svcdserver "github.com/raftq/raftq/svcd/server"
)

// idempotentHeader is the request metadata that promises every job of an
// Enqueue carries an idempotency key; only such Enqueues are retried on
// UNAVAILABLE.
const idempotentHeader = "x-raftq-idempotent"

// retrySafe lists the RPCs that Envoy may retry after UNAVAILABLE, which
// brokerd also answers when the outcome is INDETERMINATE. A method missing
// here must not be retried on UNAVAILABLE; a new RPC added to the protos
// fails the test until it is routed and classified.
var retrySafe = map[string]string{
	"/raftq.v1.Broker/Enqueue":          "only with " + idempotentHeader + ": the key makes a repeat return the first job",
	"/raftq.v1.Broker/Fetch":            "a lease whose answer is lost expires; the job is leased again",
	"/raftq.v1.Broker/Ack":              "an ack of a job already acked with the same token succeeds",
	"/raftq.v1.Broker/ExtendLease":      "extending the same lease twice is harmless",
	"/raftq.v1.Broker/AckBatch":         "per item as Ack",
	"/raftq.v1.Broker/ExtendLeaseBatch": "per item as ExtendLease",
	"/raftq.v1.Broker/GetJob":           "read",
	"/raftq.v1.Broker/QueueStats":       "read",
	"/raftq.v1.Results/StoreResult":     "fenced by (job, token): a repeat is answered DUPLICATE",
	"/raftq.v1.Results/GetResult":       "read",
	"/raftq.v1.Results/ListResults":     "read",
	"/raftq.v1.Results/ListAttempts":    "read",
	"/raftq.v1.Cluster/Status":          "", // a read, but operators call it by hand
	"/raftq.v1.Broker/Nack":             "",
	"/raftq.v1.Broker/NackBatch":        "",
	"/raftq.v1.Broker/EnqueueStream":    "", // a stream; the client retries its jobs by key
	"/raftq.v1.Broker/Consume":          "", // a stream; a job pushed on a broken one comes back at lease expiry
	"/raftq.v1.Broker/CancelJob":        "",
	"/raftq.v1.Admin/PauseQueue":        "",
	"/raftq.v1.Admin/ResumeQueue":       "",
	"/raftq.v1.Admin/Redrive":           "",
	"/raftq.v1.Admin/ListJobs":          "",
	"/raftq.v1.Cluster/Join":            "",
	"/raftq.v1.Cluster/Remove":          "",
	"/raftq.v1.Admin/PurgeDead":         "",
	// Placement: MoveQueue and PartitionQueue are refused when repeated
	// (one move at a time, partitioned once), SealQueue, ImportKeys and
	// ImportSchedules are brokers' own steps; the client retries them, not
	// Envoy.
	"/raftq.v1.Admin/MoveQueue":            "",
	"/raftq.v1.Admin/PartitionQueue":       "",
	"/raftq.v1.Admin/SealQueue":            "",
	"/raftq.v1.Admin/ImportKeys":           "",
	"/raftq.v1.Admin/ImportSchedules":      "",
	"/raftq.v1.Admin/ListPlacements":       "",
	"/raftq.v1.Admin/ExportQueue":          "", // brokers' own read for a move
	"/raftq.v1.Cluster/TransferLeadership": "",
	"/raftq.v1.Cluster/Snapshot":           "", // a stream
	"/raftq.v1.Cluster/Restore":            "", // a stream
	"/raftq.v1.Cluster/WatchRoutes":        "", // a stream; the client opens another
	// PutSchedule, Pause and Resume are idempotent, but like the other
	// admin calls they are not retried on UNAVAILABLE: the client retries.
	"/raftq.v1.Schedules/PutSchedule":    "",
	"/raftq.v1.Schedules/GetSchedule":    "",
	"/raftq.v1.Schedules/ListSchedules":  "",
	"/raftq.v1.Schedules/PauseSchedule":  "",
	"/raftq.v1.Schedules/ResumeSchedule": "",
	"/raftq.v1.Schedules/DeleteSchedule": "",
}

// clusterFor is where each service's RPCs must go.
var clusterFor = map[string]string{
	"raftq.v1.Broker":    "brokerd",
	"raftq.v1.Admin":     "brokerd",
	"raftq.v1.Cluster":   "brokerd",
	"raftq.v1.Schedules": "brokerd",
	"raftq.v1.Results":   "svcd",
}

// configFiles returns every Envoy config in this directory.
func configFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"envoy.yaml", "envoy-tls.yaml"} {
		if !slices.Contains(files, want) {
			t.Fatalf("%s is missing from envoy/ (found %v)", want, files)
		}
	}
	return files
}

// parse reads one YAML config into Envoy's bootstrap proto the way Envoy
// does (YAML → JSON → proto3 JSON mapping, unknown fields rejected) and runs
// the protoc-gen-validate rules, including those of every typed_config.
func parse(y []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, b); err != nil {
		return nil, fmt.Errorf("not an Envoy v3 bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid: %w", err)
	}
	if errs := walk(b.ProtoReflect(), ""); len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return b, nil
}

// load parses the config file at path or fails the test.
func load(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	y, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parse(y)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// walk descends into every set field: Any payloads (typed_config,
// typed_extension_protocol_options) are unpacked and validated too, since
// the bootstrap's own ValidateAll stops at an Any; deprecated fields are
// reported (Envoy warns on them, and later releases refuse them).
func walk(m protoreflect.Message, path string) []string {
	var errs []string
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return []string{fmt.Sprintf("%s: %s: %v (extension not registered?)", path, a.GetTypeUrl(), err)}
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Sprintf("%s (%s): %v", path, a.GetTypeUrl(), err))
			}
		}
		return append(errs, walk(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().FullName())+">")...)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			errs = append(errs, fmt.Sprintf("%s: deprecated field", p))
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				errs = append(errs, walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))...)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, walk(mv.Message(), fmt.Sprintf("%s[%s]", p, k.String()))...)
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			errs = append(errs, walk(v.Message(), p)...)
		}
		return true
	})
	return errs
}

func unpack[T proto.Message](t *testing.T, a *anypb.Any, into T) T {
	t.Helper()
	if err := a.UnmarshalTo(into); err != nil {
		t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
	}
	return into
}

// grpcListener returns the listener carrying gRPC and its connection manager.
func grpcListener(t *testing.T, b *bootstrapv3.Bootstrap) (*listenerv3.Listener, *listenerv3.FilterChain, *hcmv3.HttpConnectionManager) {
	t.Helper()
	ls := b.GetStaticResources().GetListeners()
	if len(ls) != 1 {
		t.Fatalf("want exactly one listener, got %d", len(ls))
	}
	l := ls[0]
	if len(l.GetFilterChains()) != 1 {
		t.Fatalf("listener %s: want one filter chain, got %d", l.GetName(), len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	for _, f := range fc.GetFilters() {
		if f.GetName() == "envoy.filters.network.http_connection_manager" {
			return l, fc, unpack(t, f.GetTypedConfig(), &hcmv3.HttpConnectionManager{})
		}
	}
	t.Fatalf("listener %s has no http_connection_manager", l.GetName())
	return nil, nil, nil
}

func clusters(b *bootstrapv3.Bootstrap) map[string]*clusterv3.Cluster {
	out := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		out[c.GetName()] = c
	}
	return out
}

// methods returns "/pkg.Service/Method" for every RPC of raftq's public API,
// mapped to whether it streams.
func methods() map[string]bool {
	out := map[string]bool{}
	for _, fd := range []protoreflect.FileDescriptor{raftqv1.File_raftq_v1_broker_proto, raftqv1.File_raftq_v1_results_proto} {
		for i := 0; i < fd.Services().Len(); i++ {
			s := fd.Services().Get(i)
			for j := 0; j < s.Methods().Len(); j++ {
				m := s.Methods().Get(j)
				out[fmt.Sprintf("/%s/%s", s.FullName(), m.Name())] = m.IsStreamingClient() || m.IsStreamingServer()
			}
		}
	}
	return out
}

// matchRoute returns the first route a gRPC request for path with the given
// headers takes, the way Envoy picks routes (in order, first match wins).
// It handles the match kinds the configs use and fails on any other.
func matchRoute(t *testing.T, routes []*routev3.Route, path string, headers map[string]string) *routev3.Route {
	t.Helper()
	for _, r := range routes {
		m := r.GetMatch()
		var ok bool
		switch {
		case m.GetPath() != "":
			ok = path == m.GetPath()
		case m.GetPrefix() != "":
			ok = strings.HasPrefix(path, m.GetPrefix())
		case m.GetSafeRegex() != nil:
			// Envoy's safe_regex is RE2 matched against the whole path.
			ok = regexp.MustCompile("^(?:" + m.GetSafeRegex().GetRegex() + ")$").MatchString(path)
		default:
			t.Fatalf("route %v: match kind not understood by this test", m)
		}
		for _, h := range m.GetHeaders() {
			_, present := headers[h.GetName()]
			if !h.GetPresentMatch() {
				t.Fatalf("route %v: header match kind not understood by this test", m)
			}
			ok = ok && present != h.GetInvertMatch()
		}
		if ok {
			return r
		}
	}
	return nil
}

func retriesOn(r *routev3.Route, cond string) bool {
	for _, c := range strings.Split(r.GetRoute().GetRetryPolicy().GetRetryOn(), ",") {
		if strings.TrimSpace(c) == cond {
			return true
		}
	}
	return false
}

func longerThan(d *durationpb.Duration, min time.Duration) bool {
	return d != nil && d.AsDuration() > min
}

// TestConfigsValidate parses and validates every config in envoy/.
func TestConfigsValidate(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) { load(t, f) })
	}
}

// TestBadConfigsRejected makes sure the checks above catch each kind of
// mistake they are there for.
func TestBadConfigsRejected(t *testing.T) {
	const cluster = `
static_resources:
  clusters:
    - name: c
      connect_timeout: %s
      %s
`
	for name, y := range map[string]string{
		"unknown field":     fmt.Sprintf(cluster, "1s", "no_such_field: 1"),
		"invalid value":     fmt.Sprintf(cluster, "-1s", ""),
		"unknown extension": fmt.Sprintf(cluster, "1s", `typed_extension_protocol_options: {x: {"@type": type.googleapis.com/no.such.Type}}`),
		"invalid extension": fmt.Sprintf(cluster, "1s", `typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {"@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, common_http_protocol_options: {max_headers_count: 0}}}`),
		"deprecated field":  fmt.Sprintf(cluster, "1s", "http2_protocol_options: {}"),
	} {
		if _, err := parse([]byte(y)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := parse([]byte(fmt.Sprintf(cluster, "1s", ""))); err != nil {
		t.Errorf("a minimal valid config was refused: %v", err)
	}
}

// TestRouting checks that every RPC of the public API is routed to the
// right cluster, and that only the safe ones are retried on UNAVAILABLE.
func TestRouting(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			b := load(t, f)
			_, _, hcm := grpcListener(t, b)
			cl := clusters(b)
			vhs := hcm.GetRouteConfig().GetVirtualHosts()
			if len(vhs) != 1 {
				t.Fatalf("want one virtual host, got %d", len(vhs))
			}
			routes := vhs[0].GetRoutes()
			for _, r := range routes {
				if r.GetMatch().GetGrpc() == nil {
					t.Errorf("route %v: should match gRPC requests only", r.GetMatch())
				}
				if c := r.GetRoute().GetCluster(); cl[c] == nil {
					t.Errorf("route %v: unknown cluster %q", r.GetMatch(), c)
				}
			}
			for m, streams := range methods() {
				svc := strings.Split(m, "/")[1]
				why, known := retrySafe[m]
				if !known {
					t.Errorf("%s: new RPC: decide whether Envoy may retry it and add it to retrySafe", m)
				}
				for _, hdr := range []map[string]string{nil, {idempotentHeader: "1"}} {
					r := matchRoute(t, routes, m, hdr)
					if r == nil {
						t.Errorf("%s (headers %v): no route", m, hdr)
						continue
					}
					if got, want := r.GetRoute().GetCluster(), clusterFor[svc]; got != want {
						t.Errorf("%s: routed to %q, want %q", m, got, want)
					}
					// A stream (backup, restore) may run for minutes: no
					// overall timeout, but an idle one.
					if streams && (r.GetRoute().GetTimeout().AsDuration() != 0 || r.GetRoute().GetIdleTimeout() == nil) {
						t.Errorf("%s streams: want route timeout 0s (off) and an idle_timeout, got %v / %v", m, r.GetRoute().GetTimeout(), r.GetRoute().GetIdleTimeout())
					}
					safe := why != ""
					if m == "/raftq.v1.Broker/Enqueue" {
						safe = hdr != nil
					}
					if got := retriesOn(r, "unavailable"); got != safe {
						t.Errorf("%s (headers %v): retry on unavailable = %v, want %v", m, hdr, got, safe)
					}
					// Failures that prove nothing reached a broker are safe
					// to retry everywhere.
					if !retriesOn(r, "connect-failure") || !retriesOn(r, "refused-stream") {
						t.Errorf("%s: should retry connect-failure and refused-stream", m)
					}
					// Anything broader could repeat a write that happened.
					for _, c := range strings.Split(r.GetRoute().GetRetryPolicy().GetRetryOn(), ",") {
						if c = strings.TrimSpace(c); !slices.Contains([]string{"unavailable", "connect-failure", "refused-stream"}, c) {
							t.Errorf("%s: retry_on %q may repeat a write", m, c)
						}
					}
				}
			}
		})
	}
}

// TestLongPolls checks that every timeout a parked Fetch passes through is
// longer than the longest wait a broker accepts.
func TestLongPolls(t *testing.T) {
	maxWait := brokerd.DefaultConfig().Limits.MaxFetchWait
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			b := load(t, f)
			_, _, hcm := grpcListener(t, b)
			if d := hcm.GetStreamIdleTimeout(); !longerThan(d, maxWait) {
				t.Errorf("stream_idle_timeout %v must be longer than MaxFetchWait %s", d, maxWait)
			}
			if d := hcm.GetRequestTimeout(); d != nil && d.AsDuration() != 0 && d.AsDuration() <= maxWait {
				t.Errorf("request_timeout %v must be 0 (off) or longer than %s", d, maxWait)
			}
			if hcm.GetHttp2ProtocolOptions().GetConnectionKeepalive() == nil {
				t.Error("downstream HTTP/2 keep-alive (connection_keepalive) missing")
			}
			r := matchRoute(t, hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes(), "/raftq.v1.Broker/Fetch", nil)
			a := r.GetRoute()
			if !longerThan(a.GetTimeout(), maxWait) {
				t.Errorf("Fetch route timeout %v must be longer than %s", a.GetTimeout(), maxWait)
			}
			if !longerThan(a.GetIdleTimeout(), maxWait) {
				t.Errorf("Fetch route idle_timeout %v must be longer than %s", a.GetIdleTimeout(), maxWait)
			}
			if d := a.GetMaxStreamDuration().GetGrpcTimeoutHeaderMax(); !longerThan(d, maxWait) {
				t.Errorf("Fetch grpc_timeout_header_max %v must be longer than %s", d, maxWait)
			}
			if d := a.GetRetryPolicy().GetPerTryTimeout(); d != nil && !longerThan(d, maxWait) {
				t.Errorf("Fetch per_try_timeout %v would cut long-polls", d)
			}
		})
	}
}

// TestClusters checks the leader-only health check, circuit breakers,
// outlier detection and upstream HTTP/2 keep-alives.
func TestClusters(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			b := load(t, f)
			cl := clusters(b)
			for name, service := range map[string]string{"brokerd": brokerd.LeaderHealthService, "svcd": svcdserver.ServiceName} {
				c := cl[name]
				if c == nil {
					t.Fatalf("cluster %s missing", name)
				}
				if len(c.GetHealthChecks()) != 1 || c.GetHealthChecks()[0].GetGrpcHealthCheck() == nil {
					t.Errorf("%s: want one gRPC health check", name)
				} else if got := c.GetHealthChecks()[0].GetGrpcHealthCheck().GetServiceName(); got != service {
					t.Errorf("%s: health-checks service %q, want %q", name, got, service)
				}
				if len(c.GetCircuitBreakers().GetThresholds()) == 0 {
					t.Errorf("%s: no circuit breaker thresholds", name)
				}
				if c.GetOutlierDetection() == nil {
					t.Errorf("%s: no outlier detection", name)
				}
				po := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
				if po == nil {
					t.Errorf("%s: no HttpProtocolOptions: gRPC upstreams need HTTP/2", name)
					continue
				}
				h := unpack(t, po, &upstreamhttpv3.HttpProtocolOptions{})
				h2 := h.GetExplicitHttpConfig().GetHttp2ProtocolOptions()
				if h2 == nil {
					t.Errorf("%s: upstream is not HTTP/2", name)
				} else if h2.GetConnectionKeepalive() == nil {
					t.Errorf("%s: upstream HTTP/2 keep-alive missing", name)
				}
			}
			brk := cl["brokerd"]
			// With one healthy host in three, Envoy's default panic
			// threshold (50%) would send traffic to followers.
			if p := brk.GetCommonLbConfig().GetHealthyPanicThreshold(); p == nil || p.GetValue() != 0 {
				t.Errorf("brokerd: healthy_panic_threshold must be 0, got %v", p)
			}
			hc := brk.GetHealthChecks()[0]
			for what, d := range map[string]*durationpb.Duration{"interval": hc.GetInterval(), "no_traffic_interval": hc.GetNoTrafficInterval()} {
				if d == nil || d.AsDuration() > 2*time.Second {
					t.Errorf("brokerd: health check %s %v: a leader change would go unseen too long", what, d)
				}
			}
			if od := brk.GetOutlierDetection(); od.GetMaxEjectionPercent().GetValue() != 100 {
				t.Errorf("brokerd: max_ejection_percent must be 100 (the leader is the only healthy host), got %v", od.GetMaxEjectionPercent())
			}
		})
	}
}

// TestAdminAndTLS checks that the admin API listens on loopback only and
// that the TLS variant terminates TLS with HTTP/2 negotiated by ALPN.
func TestAdminAndTLS(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			b := load(t, f)
			sa := b.GetAdmin().GetAddress().GetSocketAddress()
			if ip, err := netip.ParseAddr(sa.GetAddress()); err != nil || !ip.IsLoopback() {
				t.Errorf("admin listens on %q: want a loopback address", sa.GetAddress())
			}
			_, fc, _ := grpcListener(t, b)
			ts := fc.GetTransportSocket()
			if !strings.Contains(f, "tls") {
				if ts != nil {
					t.Errorf("plaintext config has a transport socket %s", ts.GetName())
				}
				return
			}
			if ts == nil {
				t.Fatal("TLS variant has no transport socket")
			}
			tc := unpack(t, ts.GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
			common := tc.GetCommonTlsContext()
			if !slices.Contains(common.GetAlpnProtocols(), "h2") {
				t.Errorf("TLS: ALPN %v must offer h2 (gRPC)", common.GetAlpnProtocols())
			}
			if len(common.GetTlsCertificates()) == 0 && len(common.GetTlsCertificateSdsSecretConfigs()) == 0 {
				t.Error("TLS: no certificate")
			}
			if v := common.GetTlsParams().GetTlsMinimumProtocolVersion(); v < tlsv3.TlsParameters_TLSv1_2 {
				t.Errorf("TLS: minimum version %v, want TLSv1_2 or later", v)
			}
		})
	}
}

// TestGroupsExample checks groups/envoy-groups.yaml, the static per-group
// fallback README.md describes: valid for Envoy; a call naming group g in
// placement.Header reaches a cluster health-checked for group g's
// leader-only service (brokerd.GroupLeaderHealthService), for every group
// the file has a cluster for; a call naming any other group reaches no
// broker; a call without the header reaches group 0's leader; and what
// envoy.yaml promises for the leader cluster (panic threshold 0, HTTP/2,
// long-polls not cut, retries only where nothing reached a broker) holds
// for every group's cluster and route.
func TestGroupsExample(t *testing.T) {
	const file = "groups/envoy-groups.yaml"
	b := load(t, file)
	_, _, hcm := grpcListener(t, b)
	maxWait := brokerd.DefaultConfig().Limits.MaxFetchWait
	if d := hcm.GetStreamIdleTimeout(); !longerThan(d, maxWait) {
		t.Errorf("stream_idle_timeout %v must be longer than MaxFetchWait %s", d, maxWait)
	}
	// service is the leader-only health service each cluster checks.
	service := map[string]string{}
	for name, c := range clusters(b) {
		if len(c.GetHealthChecks()) != 1 || c.GetHealthChecks()[0].GetGrpcHealthCheck() == nil {
			t.Fatalf("%s: want one gRPC health check", name)
		}
		service[name] = c.GetHealthChecks()[0].GetGrpcHealthCheck().GetServiceName()
		if p := c.GetCommonLbConfig().GetHealthyPanicThreshold(); p == nil || p.GetValue() != 0 {
			t.Errorf("%s: healthy_panic_threshold must be 0, got %v", name, p)
		}
		po := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		if po == nil || unpack(t, po, &upstreamhttpv3.HttpProtocolOptions{}).GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Errorf("%s: upstream is not HTTP/2", name)
		}
	}
	routes := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	// route is the first route a call to path with header value v (none
	// when v is "") takes, as Envoy picks them.
	route := func(path, v string) *routev3.Route {
		for _, r := range routes {
			m := r.GetMatch()
			ok := m.GetGrpc() != nil && strings.HasPrefix(path, m.GetPrefix())
			for _, h := range m.GetHeaders() {
				if h.GetName() != placement.Header {
					t.Fatalf("route %v: header %q: this test knows only %s", m, h.GetName(), placement.Header)
				}
				switch {
				case h.GetPresentMatch():
					ok = ok && v != ""
				case h.GetStringMatch().GetExact() != "":
					ok = ok && v == h.GetStringMatch().GetExact()
				default:
					t.Fatalf("route %v: header match kind not understood by this test", m)
				}
			}
			if ok {
				return r
			}
		}
		return nil
	}
	groups := len(service)
	for m := range methods() {
		if strings.HasPrefix(m, "/raftq.v1.Results/") {
			continue // svcd: envoy.yaml's routes, not this example's
		}
		for g := range groups + 1 {
			v := strconv.Itoa(g)
			r := route(m, v)
			if g == groups {
				// A group the file has no cluster for.
				if r == nil || r.GetRoute() != nil {
					t.Errorf("%s with %s=%s: routed to %q, want a direct answer (no group holds it)", m, placement.Header, v, r.GetRoute().GetCluster())
				}
				continue
			}
			if r == nil {
				t.Fatalf("%s with %s=%s: no route", m, placement.Header, v)
			}
			if got, want := service[r.GetRoute().GetCluster()], brokerd.GroupLeaderHealthService(uint32(g)); got != want {
				t.Errorf("%s with %s=%s: cluster %q checks %q, want %q", m, placement.Header, v, r.GetRoute().GetCluster(), got, want)
			}
		}
		r := route(m, "")
		if r == nil {
			t.Fatalf("%s without the header: no route", m)
		}
		if got := service[r.GetRoute().GetCluster()]; got != brokerd.GroupLeaderHealthService(0) && got != brokerd.LeaderHealthService {
			t.Errorf("%s without the header: cluster %q checks %q, want group 0's leader", m, r.GetRoute().GetCluster(), got)
		}
	}
	for _, r := range routes {
		a := r.GetRoute()
		if a == nil {
			continue
		}
		if d := a.GetTimeout(); d == nil || (d.AsDuration() != 0 && !longerThan(d, maxWait)) {
			t.Errorf("route %v: timeout %v would cut long-polls", r.GetMatch(), d)
		}
		for _, c := range strings.Split(a.GetRetryPolicy().GetRetryOn(), ",") {
			if c = strings.TrimSpace(c); c != "connect-failure" && c != "refused-stream" {
				t.Errorf("route %v: retry_on %q may repeat a write", r.GetMatch(), c)
			}
		}
	}
}
