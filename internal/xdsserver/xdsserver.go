package xdsserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	cplog "github.com/envoyproxy/go-control-plane/pkg/log"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Defaults for Options.
const (
	// DefaultName is the listener and route configuration name: gRPC
	// clients dial "xds:///raftq".
	DefaultName = "raftq"
	// DefaultHeader is the request header (gRPC metadata key) naming the
	// Raft group of the call's queue.
	DefaultHeader = "raftq-group"
)

// ClusterPrefix starts the name of each group's cluster:
// "raftq-group-<g>".
const ClusterPrefix = "raftq-group-"

// UnknownGroupCluster is the cluster of calls whose header names a group
// the control plane does not know. It never has an endpoint, so those calls
// fail with UNAVAILABLE instead of reaching a leader that does not hold the
// queue.
const UnknownGroupCluster = "raftq-unknown-group"

// Options configures a Server. The zero value is usable: name "raftq",
// header "raftq-group", default group 0.
type Options struct {
	// Name is the Listener and RouteConfiguration name, the host of a gRPC
	// client's target (xds:///<Name>). Default DefaultName.
	Name string
	// Header is the request header naming the call's group, lower case
	// (HTTP/2 and gRPC metadata keys are). Default DefaultHeader.
	Header string
	// DefaultGroup is the group of calls without the header.
	DefaultGroup uint32
	// IPOnly makes Update refuse leader addresses whose host is not an IP
	// literal. Set it when Envoy is a client: Envoy does not resolve host
	// names in EDS and would reject (NACK) the whole update. gRPC clients
	// resolve them when they dial.
	IPOnly bool
}

// headerName is what Envoy's HeaderMatcher accepts and gRPC sends as a
// metadata key: lower-case token characters, not a pseudo-header, not a
// binary (-bin) key whose value gRPC base64-encodes.
var headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)

// hostName is a DNS name, or a container or service name (which may hold
// '_').
var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$`)

// resourceName is what a client can put in a target without escaping.
var resourceName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// withDefaults fills in the defaults.
func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Header == "" {
		o.Header = DefaultHeader
	}
	return o
}

// Validate reports whether the options (after defaults) can be served: a
// name fit for a target and a header a gRPC client can send.
func (o Options) Validate() error {
	o = o.withDefaults()
	if !resourceName.MatchString(o.Name) {
		return fmt.Errorf("xdsserver: name %q: want letters, digits, '.', '_' or '-'", o.Name)
	}
	if !headerName.MatchString(o.Header) {
		return fmt.Errorf("xdsserver: header %q: want a lower-case HTTP header name", o.Header)
	}
	if len(o.Header) > 4 && o.Header[len(o.Header)-4:] == "-bin" {
		return fmt.Errorf("xdsserver: header %q: a -bin key carries binary values, not a group number", o.Header)
	}
	return nil
}

// Routes is what the control plane publishes: for each group, its leader's
// gRPC address ("" while unknown).
type Routes struct {
	// Leaders maps a group to its leader's gRPC address, host:port. An
	// empty address publishes the group with no endpoint: its calls fail
	// UNAVAILABLE until a leader is known.
	Leaders map[uint32]string
}

// Server is the control plane. It is safe for concurrent use.
type Server struct {
	log   *slog.Logger
	opts  Options
	cache cachev3.SnapshotCache
	xds   serverv3.Server
	stop  context.CancelFunc // ends every stream (Stop)

	mu   sync.Mutex // serializes Update: snapshots go out in call order
	last Routes     // last published

	nackMu sync.Mutex
	nacks  map[nackKey]string // last NACK error logged per stream and type
}

// snapshotKey is the one cache key every client maps to (allNodes).
const snapshotKey = "raftq"

// allNodes maps every node to one snapshot, so that one Update reaches
// every client whatever node id its bootstrap names.
type allNodes struct{}

// ID is snapshotKey for every node.
func (allNodes) ID(*corev3.Node) string { return snapshotKey }

// New returns a control plane publishing a first snapshot in which no
// leader is known (so clients that connect before the first Update get
// resources at once and fail calls with UNAVAILABLE rather than waiting).
// It panics on options that Validate refuses: they are the caller's
// constants or its configuration, which it validates first.
func New(logger *slog.Logger, opts Options) *Server {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "xds")
	s := &Server{
		log:   logger,
		opts:  opts.withDefaults(),
		nacks: map[nackKey]string{},
		// ADS mode: on the one stream the cache answers in dependency
		// order (CDS before EDS, LDS before RDS), and holds an EDS (or
		// RDS) answer until the client's request names every resource of
		// that type in the snapshot, so the answer carries them all under
		// one version instead of a partial set.
		cache: cachev3.NewSnapshotCache(true, allNodes{}, slogAdapter(logger)),
	}
	var ctx context.Context
	ctx, s.stop = context.WithCancel(context.Background())
	s.xds = serverv3.NewServer(ctx, s.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: s.onRequest,
		StreamClosedFunc:  s.onStreamClosed,
	})
	if err := s.publish(Routes{}); err != nil {
		// Resources built from validated options and no addresses: a
		// failure is a bug in this package.
		panic(err)
	}
	return s
}

// Register registers the aggregated discovery service (ADS) on g. Envoy
// (ads_config) and gRPC's xDS client both speak ADS.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Stop ends every open stream, now and from then on. A stream otherwise
// lasts as long as its client: the gRPC server's GracefulStop would wait
// for it forever. Clients keep the routes they hold and reconnect (to
// another control plane, if their bootstrap names one). Safe to call more
// than once.
func (s *Server) Stop() { s.stop() }

// Update publishes r as a new snapshot to every connected client at once
// (and to clients that connect later). It refuses a malformed address with
// an error and then publishes nothing. Publishing routes equal to the last
// ones is a no-op.
func (s *Server) Update(r Routes) error {
	for _, g := range slices.Sorted(maps.Keys(r.Leaders)) {
		if err := s.checkAddr(r.Leaders[g]); err != nil {
			return fmt.Errorf("xdsserver: group %d: %w", g, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if maps.Equal(r.Leaders, s.last.Leaders) {
		return nil
	}
	return s.publishLocked(r)
}

// publish is publishLocked for New.
func (s *Server) publish(r Routes) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.publishLocked(r)
}

func (s *Server) publishLocked(r Routes) error {
	res, err := s.resources(r)
	if err != nil {
		return err
	}
	version, err := versionOf(res)
	if err != nil {
		return err
	}
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		return fmt.Errorf("xdsserver: %w", err)
	}
	if err := consistent(res); err != nil {
		return fmt.Errorf("xdsserver: inconsistent snapshot: %w", err)
	}
	if err := s.cache.SetSnapshot(context.Background(), snapshotKey, snap); err != nil {
		return fmt.Errorf("xdsserver: %w", err)
	}
	s.last = Routes{Leaders: maps.Clone(r.Leaders)}
	s.log.Info("published xds routes", "version", version, "leaders", fmt.Sprint(r.Leaders))
	return nil
}

// checkAddr accepts "" (leader unknown) and host:port with a numeric port
// in 1..65535 and an IP address or host name as host (only an IP address
// when Options.IPOnly is set).
func (s *Server) checkAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("leader address %q: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("leader address %q: no host", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("leader address %q: port %q is not a number in 1..65535", addr, port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if s.opts.IPOnly {
		return fmt.Errorf("leader address %q: host is not an IP address (IPOnly: Envoy does not resolve names in EDS)", addr)
	}
	if !hostName.MatchString(host) {
		return fmt.Errorf("leader address %q: host is neither an IP address nor a host name", addr)
	}
	return nil
}

// ClusterName is the cluster of group g's leader.
func ClusterName(g uint32) string { return ClusterPrefix + strconv.FormatUint(uint64(g), 10) }

// resources builds the snapshot's resources for r, each checked with
// Envoy's proto validation.
func (s *Server) resources(r Routes) (map[resourcev3.Type][]types.Resource, error) {
	groups := slices.Sorted(maps.Keys(r.Leaders))
	if _, ok := r.Leaders[s.opts.DefaultGroup]; !ok {
		groups = append(groups, s.opts.DefaultGroup)
		slices.Sort(groups)
	}

	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: s.opts.Name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    ads,
			RouteConfigName: s.opts.Name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	if err != nil {
		return nil, err
	}
	listener := &listenerv3.Listener{
		Name:        s.opts.Name,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
	}

	// http2 is Envoy's upstream protocol for these clusters (gRPC needs
	// HTTP/2); gRPC clients ignore it.
	h2, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	cluster := func(name string) *clusterv3.Cluster {
		return &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
			LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
			TypedExtensionProtocolOptions: map[string]*anypb.Any{
				"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2,
			},
		}
	}
	// noTimeout turns off Envoy's default 15 s route timeout, which would
	// cut Fetch long-polls; the client's deadline still applies.
	route := func(cluster string, headers ...*routev3.HeaderMatcher) *routev3.Route {
		return &routev3.Route{
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers:       headers,
			},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
				Timeout:          durationpb.New(0),
			}},
		}
	}

	var (
		clusters  []types.Resource
		endpoints []types.Resource
		routes    []*routev3.Route
	)
	for _, g := range groups {
		name := ClusterName(g)
		clusters = append(clusters, cluster(name))
		endpoints = append(endpoints, loadAssignment(name, r.Leaders[g]))
		routes = append(routes, route(name, &routev3.HeaderMatcher{
			Name: s.opts.Header,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: strconv.FormatUint(uint64(g), 10)},
			}},
		}))
	}
	clusters = append(clusters, cluster(UnknownGroupCluster))
	endpoints = append(endpoints, loadAssignment(UnknownGroupCluster, ""))
	routes = append(routes,
		route(UnknownGroupCluster, &routev3.HeaderMatcher{
			Name:                 s.opts.Header,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true},
		}),
		route(ClusterName(s.opts.DefaultGroup)),
	)
	routeConfig := &routev3.RouteConfiguration{
		Name: s.opts.Name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    s.opts.Name,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}

	res := map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: {listener},
		resourcev3.RouteType:    {routeConfig},
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: endpoints,
	}
	for _, list := range res {
		for _, m := range list {
			if err := validate(m); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// loadAssignment is cluster's endpoints: addr, healthy, in one locality of
// weight 1 (gRPC ignores a locality without a weight), or none when addr
// is "". The locality is named: gRPC refuses one without an id.
func loadAssignment(cluster, addr string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if addr == "" {
		return cla
	}
	host, portStr, _ := net.SplitHostPort(addr) // checked by checkAddr
	port, _ := strconv.ParseUint(portStr, 10, 16)
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{
		Locality:            &corev3.Locality{Region: "raftq"},
		LoadBalancingWeight: wrapperspb.UInt32(1),
		LbEndpoints: []*endpointv3.LbEndpoint{{
			HealthStatus: corev3.HealthStatus_HEALTHY,
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Protocol:      corev3.SocketAddress_TCP,
					Address:       host,
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
				}}},
			}},
		}},
	}}
	return cla
}

// validate runs Envoy's proto validation (protoc-gen-validate's
// ValidateAll) on m and on every message packed in an Any inside it (the
// HCM, the router, the upstream protocol options), since ValidateAll stops
// at an Any, and refuses deprecated fields (Envoy warns on them and later
// releases refuse them). It is the check envoy/envoy_test.go runs on the
// static configs.
func validate(m proto.Message) error {
	var errs []error
	// walk validates m when it is the resource or an Any's payload (the
	// payload's ValidateAll covers its own nested messages down to the
	// next Any) and descends into every set message field.
	var walk func(m protoreflect.Message, path string)
	walk = func(m protoreflect.Message, path string) {
		root := path == ""
		if a, ok := m.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", path, a.GetTypeUrl(), err))
				return
			}
			m, root = inner.ProtoReflect(), true
			path += "<" + string(m.Descriptor().FullName()) + ">"
		}
		if v, ok := m.Interface().(interface{ ValidateAll() error }); ok && root {
			if err := v.ValidateAll(); err != nil && path == "" {
				errs = append(errs, err)
			} else if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", path, err))
			}
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
				errs = append(errs, fmt.Errorf("%s: deprecated field", p))
			}
			switch {
			case fd.Message() == nil:
			case fd.IsList():
				for i := range v.List().Len() {
					walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
				}
			case fd.IsMap():
				if fd.MapValue().Message() != nil {
					v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
						walk(mv.Message(), fmt.Sprintf("%s[%v]", p, k))
						return true
					})
				}
			default:
				walk(v.Message(), p)
			}
			return true
		})
	}
	walk(m.ProtoReflect(), "")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xdsserver: %s %q fails Envoy's validation: %w", m.ProtoReflect().Descriptor().Name(), cachev3.GetResourceName(m), err)
	}
	return nil
}

// consistent checks that every reference in res resolves and nothing is
// left over: the listener's RDS name is the one route configuration, every
// route's cluster is a cluster, and clusters and load assignments pair up
// by name. (The cache's own Snapshot.Consistent follows RDS names only in
// a listener's filter chains, not in an api_listener, the form gRPC
// clients read, so it would call every snapshot here inconsistent.) A
// client given an inconsistent ADS snapshot waits for resources that never
// come, so this runs before every publish.
func consistent(res map[resourcev3.Type][]types.Resource) error {
	names := func(typ resourcev3.Type) map[string]bool {
		out := map[string]bool{}
		for _, m := range res[typ] {
			out[cachev3.GetResourceName(m)] = true
		}
		return out
	}
	routeConfigs, clusters, assignments := names(resourcev3.RouteType), names(resourcev3.ClusterType), names(resourcev3.EndpointType)

	rds := map[string]bool{}
	for _, m := range res[resourcev3.ListenerType] {
		var hcm hcmv3.HttpConnectionManager
		if err := m.(*listenerv3.Listener).GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
			return fmt.Errorf("listener %q: %w", cachev3.GetResourceName(m), err)
		}
		rds[hcm.GetRds().GetRouteConfigName()] = true
	}
	if !maps.Equal(rds, routeConfigs) {
		return fmt.Errorf("listeners name route configurations %v, snapshot has %v", slices.Sorted(maps.Keys(rds)), slices.Sorted(maps.Keys(routeConfigs)))
	}
	routed := map[string]bool{}
	for _, m := range res[resourcev3.RouteType] {
		for _, vh := range m.(*routev3.RouteConfiguration).GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				routed[r.GetRoute().GetCluster()] = true
			}
		}
	}
	if !maps.Equal(routed, clusters) {
		return fmt.Errorf("routes name clusters %v, snapshot has %v", slices.Sorted(maps.Keys(routed)), slices.Sorted(maps.Keys(clusters)))
	}
	if !maps.Equal(clusters, assignments) {
		return fmt.Errorf("clusters %v, load assignments %v", slices.Sorted(maps.Keys(clusters)), slices.Sorted(maps.Keys(assignments)))
	}
	return nil
}

// versionOf hashes the resources: equal routes give equal versions on
// every control plane and across restarts, different ones different
// versions.
func versionOf(res map[resourcev3.Type][]types.Resource) (string, error) {
	h := sha256.New()
	for _, typ := range slices.Sorted(maps.Keys(res)) {
		for _, m := range res[typ] {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			if err != nil {
				return "", fmt.Errorf("xdsserver: %w", err)
			}
			fmt.Fprintf(h, "%s %d\n", typ, len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// nackPause is how long a stream waits after a NACK before the server
// answers it. The SotW server answers a NACK (whose version is the
// client's last accepted one, not the snapshot's) with the same snapshot
// at once, which the client rejects again: without a pause the pair spins
// a core per rejecting client until the next Update.
const nackPause = time.Second

// onRequest logs a client's NACK (a request carrying error_detail: the
// client rejected the snapshot and keeps its previous one, which an
// operator needs to know, e.g. a host name sent to Envoy without IPOnly),
// once per stream, type and error, and slows the NACK loop down. The
// callback runs on the stream's own loop, so the pause holds back only
// that client's stream.
func (s *Server) onRequest(stream int64, req *discoveryv3.DiscoveryRequest) error {
	d := req.GetErrorDetail()
	if d == nil {
		return nil
	}
	key := nackKey{stream, req.GetTypeUrl()}
	s.nackMu.Lock()
	seen := s.nacks[key] == d.GetMessage()
	s.nacks[key] = d.GetMessage()
	s.nackMu.Unlock()
	if !seen {
		s.log.Warn("xds client rejected an update", "node", req.GetNode().GetId(),
			"type", req.GetTypeUrl(), "accepted_version", req.GetVersionInfo(), "error", d.GetMessage())
	}
	time.Sleep(nackPause)
	return nil
}

// nackKey names a stream's resource type for NACK log de-duplication.
type nackKey struct {
	stream int64
	typ    string
}

// onStreamClosed forgets the stream's NACKs.
func (s *Server) onStreamClosed(stream int64, _ *corev3.Node) {
	s.nackMu.Lock()
	defer s.nackMu.Unlock()
	for k := range s.nacks {
		if k.stream == stream {
			delete(s.nacks, k)
		}
	}
}

// slogAdapter routes the cache's logging to logger one level down: its
// warnings are mostly the ADS hold ("not responding ... not listed") that
// happens on every client's first EDS requests, and are not worth an
// operator's attention.
func slogAdapter(logger *slog.Logger) cplog.Logger {
	return cplog.LoggerFuncs{
		DebugFunc: func(f string, a ...any) { logger.Debug(fmt.Sprintf(f, a...)) },
		InfoFunc:  func(f string, a ...any) { logger.Debug(fmt.Sprintf(f, a...)) },
		WarnFunc:  func(f string, a ...any) { logger.Debug(fmt.Sprintf(f, a...)) },
		ErrorFunc: func(f string, a ...any) { logger.Error(fmt.Sprintf(f, a...)) },
	}
}
