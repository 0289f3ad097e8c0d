package xdsserver

import (
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/raftq/raftq/internal/testutil"
)

// published returns the resources of s's current snapshot by type, sorted
// by name.
func published(t *testing.T, s *Server) map[resourcev3.Type][]types.Resource {
	t.Helper()
	snap, err := s.cache.GetSnapshot(snapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	out := map[resourcev3.Type][]types.Resource{}
	for _, typ := range []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		byName := snap.GetResources(typ)
		for _, name := range slices.Sorted(maps.Keys(byName)) {
			out[typ] = append(out[typ], byName[name])
		}
	}
	return out
}

// TestResourcesValidate checks the published resources with Envoy's proto
// validation (every Any unpacked, no deprecated field) and checks that they
// say what the package doc promises.
func TestResourcesValidate(t *testing.T) {
	s := New(nil, Options{DefaultGroup: 1})
	if err := s.Update(Routes{Leaders: map[uint32]string{1: "10.0.0.1:7101", 2: "", 5: "[fd00::5]:7102"}}); err != nil {
		t.Fatal(err)
	}
	res := published(t, s)
	for typ, list := range res {
		for _, m := range list {
			if err := validate(m); err != nil {
				t.Errorf("%s: %v", typ, err)
			}
		}
	}
	if err := consistent(res); err != nil {
		t.Fatal(err)
	}

	// Listener: api_listener, RDS "raftq" over ADS, router last.
	if len(res[resourcev3.ListenerType]) != 1 {
		t.Fatalf("listeners: %v", res[resourcev3.ListenerType])
	}
	lis := res[resourcev3.ListenerType][0].(*listenerv3.Listener)
	var hcm hcmv3.HttpConnectionManager
	if err := lis.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	if lis.GetName() != DefaultName || hcm.GetRds().GetRouteConfigName() != DefaultName || hcm.GetRds().GetConfigSource().GetAds() == nil {
		t.Errorf("listener %q, RDS %v", lis.GetName(), hcm.GetRds())
	}
	if f := hcm.GetHttpFilters(); len(f) == 0 || f[len(f)-1].GetName() != "envoy.filters.http.router" {
		t.Errorf("http filters %v: want the router last", f)
	}

	// Routes, in order: each group by exact header, any other header value
	// to the unknown-group cluster, no header to the default group (1).
	rc := res[resourcev3.RouteType][0].(*routev3.RouteConfiguration)
	type want struct{ header, exact, cluster string }
	wants := []want{
		{DefaultHeader, "1", "raftq-group-1"},
		{DefaultHeader, "2", "raftq-group-2"},
		{DefaultHeader, "5", "raftq-group-5"},
		{DefaultHeader, "", UnknownGroupCluster},
		{"", "", "raftq-group-1"},
	}
	routes := rc.GetVirtualHosts()[0].GetRoutes()
	if len(routes) != len(wants) {
		t.Fatalf("%d routes, want %d: %v", len(routes), len(wants), routes)
	}
	for i, w := range wants {
		r := routes[i]
		var got want
		got.cluster = r.GetRoute().GetCluster()
		if h := r.GetMatch().GetHeaders(); len(h) == 1 {
			got.header = h[0].GetName()
			got.exact = h[0].GetStringMatch().GetExact()
			if w.exact == "" && !h[0].GetPresentMatch() {
				t.Errorf("route %d: want a presence match, got %v", i, h[0])
			}
		} else if len(h) > 1 {
			t.Errorf("route %d: %d header matchers", i, len(h))
		}
		if got != w || r.GetMatch().GetPrefix() != "/" {
			t.Errorf("route %d: got %+v prefix %q, want %+v", i, got, r.GetMatch().GetPrefix(), w)
		}
		if r.GetRoute().GetTimeout() == nil || r.GetRoute().GetTimeout().AsDuration() != 0 {
			t.Errorf("route %d: timeout %v, want 0 (off: long-polls)", i, r.GetRoute().GetTimeout())
		}
	}

	// Clusters: EDS over ADS.
	var names []string
	for _, m := range res[resourcev3.ClusterType] {
		c := m.(*clusterv3.Cluster)
		names = append(names, c.GetName())
		if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			t.Errorf("cluster %s: type %v, eds %v", c.GetName(), c.GetType(), c.GetEdsClusterConfig())
		}
	}
	if w := []string{"raftq-group-1", "raftq-group-2", "raftq-group-5", UnknownGroupCluster}; !slices.Equal(names, w) {
		t.Errorf("clusters %v, want %v", names, w)
	}

	// Endpoints: the leader, healthy; none when unknown.
	wantEndpoint := map[string]string{"raftq-group-1": "10.0.0.1:7101", "raftq-group-2": "", "raftq-group-5": "[fd00::5]:7102", UnknownGroupCluster: ""}
	for _, m := range res[resourcev3.EndpointType] {
		cla := m.(*endpointv3.ClusterLoadAssignment)
		var got []string
		for _, l := range cla.GetEndpoints() {
			if l.GetLocality() == nil || l.GetLoadBalancingWeight().GetValue() == 0 {
				t.Errorf("%s: locality %v weight %v: gRPC needs both", cla.GetClusterName(), l.GetLocality(), l.GetLoadBalancingWeight())
			}
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				if e.GetHealthStatus() != corev3.HealthStatus_HEALTHY {
					t.Errorf("%s: %v not HEALTHY", cla.GetClusterName(), sa)
				}
				got = append(got, net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)))
			}
		}
		w := wantEndpoint[cla.GetClusterName()]
		if (w == "" && len(got) != 0) || (w != "" && !slices.Equal(got, []string{w})) {
			t.Errorf("%s: endpoints %v, want %q", cla.GetClusterName(), got, w)
		}
	}
}

// TestValidateCatches: the checks Update runs before publishing refuse
// what Envoy would refuse, inside Anys too, and dangling references.
func TestValidateCatches(t *testing.T) {
	noStatPrefix, err := anypb.New(&hcmv3.HttpConnectionManager{}) // stat_prefix is required
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]types.Resource{
		"HCM in an Any without stat_prefix": &listenerv3.Listener{Name: "raftq", ApiListener: &listenerv3.ApiListener{ApiListener: noStatPrefix}},
		"deprecated cluster field":          &clusterv3.Cluster{Name: "c", Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		"port out of range": &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 70000}}}}}}}},
		}}},
		"route without a cluster name": &routev3.RouteConfiguration{Name: "raftq", VirtualHosts: []*routev3.VirtualHost{{
			Name: "v", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{}}},
			}}}}},
	}
	for what, m := range bad {
		if err := validate(m); err == nil {
			t.Errorf("%s: validate passed", what)
		} else {
			t.Logf("%s: %v", what, err)
		}
	}

	// A snapshot whose route names a cluster it lacks, or whose cluster
	// lacks its load assignment, is inconsistent.
	s := New(nil, Options{})
	good := published(t, s)
	if err := consistent(good); err != nil {
		t.Fatal(err)
	}
	dangling := maps.Clone(good)
	dangling[resourcev3.EndpointType] = dangling[resourcev3.EndpointType][1:]
	if err := consistent(dangling); err == nil {
		t.Error("cluster without load assignment passed")
	}
	dangling = maps.Clone(good)
	dangling[resourcev3.ClusterType] = dangling[resourcev3.ClusterType][1:]
	if err := consistent(dangling); err == nil {
		t.Error("route to a missing cluster passed")
	}
}

// TestEnvoyADSBootstrap checks envoy/xds/envoy-ads.yaml, the bootstrap
// envoy/README.md tells operators to run against this control plane: a
// valid Envoy bootstrap (the validation Update runs on resources) whose
// listener takes route configuration DefaultName over ADS and whose
// clusters come from ADS, so the names here and there cannot drift apart.
func TestEnvoyADSBootstrap(t *testing.T) {
	y, err := os.ReadFile("../../envoy/xds/envoy-ads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b); err != nil {
		t.Fatal(err)
	}
	if err := validate(&b); err != nil {
		t.Fatal(err)
	}
	dr := b.GetDynamicResources()
	if dr.GetAdsConfig().GetApiType() != corev3.ApiConfigSource_GRPC || dr.GetCdsConfig().GetAds() == nil {
		t.Errorf("dynamic_resources %v: want ADS over gRPC and CDS from ADS", dr)
	}
	xdsCluster := dr.GetAdsConfig().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	var found bool
	for _, c := range b.GetStaticResources().GetClusters() {
		found = found || c.GetName() == xdsCluster
	}
	if !found {
		t.Errorf("ADS cluster %q is not a static cluster", xdsCluster)
	}
	lis := b.GetStaticResources().GetListeners()
	if len(lis) != 1 {
		t.Fatalf("%d listeners", len(lis))
	}
	var hcm hcmv3.HttpConnectionManager
	if err := lis[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	if hcm.GetRds().GetRouteConfigName() != DefaultName || hcm.GetRds().GetConfigSource().GetAds() == nil {
		t.Errorf("listener RDS %v: want %q over ADS", hcm.GetRds(), DefaultName)
	}
}

// TestNACKLogged: a client that rejects an update is logged, once per
// stream, type and error however often it repeats the NACK, with its
// node and message. The client is a raw ADS stream, since gRPC's client
// accepts everything this package publishes.
func TestNACKLogged(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	var logs testutil.Buffer
	s := New(slog.New(slog.NewTextHandler(&logs, nil)), Options{})
	cp := startControlPlane(t, s)
	cc, err := grpc.NewClient(cp, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &discoveryv3.DiscoveryRequest{
		Node:          &corev3.Node{Id: "nacker"},
		TypeUrl:       resourcev3.ListenerType,
		ResourceNames: []string{DefaultName},
	}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResources()) != 1 {
			t.Fatalf("response %d: %d listeners", i, len(resp.GetResources()))
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{
			TypeUrl:       resourcev3.ListenerType,
			ResourceNames: []string{DefaultName},
			ResponseNonce: resp.GetNonce(),
			ErrorDetail:   &status.Status{Code: 3, Message: "test rejects listener"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 30*time.Second, "the NACK logged", func() bool {
		return strings.Contains(logs.String(), "test rejects listener")
	})
	// The loop went on (three NACKs answered); the log names it once.
	if n := strings.Count(logs.String(), "rejected an update"); n != 1 {
		t.Errorf("NACK logged %d times:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "node=nacker") {
		t.Errorf("NACK log does not name the node:\n%s", logs.String())
	}
}
