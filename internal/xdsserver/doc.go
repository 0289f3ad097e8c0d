// Package xdsserver is raftq's xDS control plane: it tells Envoy and
// proxyless gRPC clients (grpc-go's xDS client, target "xds:///raftq") which
// node leads each Raft group, so that a call carrying the header
// `raftq-group: <g>` goes straight to group g's leader.
//
// # Why xDS
//
// The static Envoy configuration (envoy/envoy.yaml) finds the leader by
// health-checking every broker for the leader-only service: Envoy learns of a
// new leader only at its next check (one second, at best), and until then it
// sends calls to the old leader or answers "no healthy upstream". With xDS the
// control plane pushes the change instead: Update publishes a new snapshot and
// every connected client (Envoy over ADS, or a gRPC channel) gets it on its
// open stream at once, with no polling interval. It also scales with the
// number of groups: one ADS stream carries every group's leader, where health
// checks would cost one probe per broker per group per second. The static
// configuration stays the fallback for deployments without the control plane
// (envoy/README.md says how to point Envoy at it).
//
// # Resources
//
// For Options{Name: "raftq", Header: "raftq-group"} and groups G (the groups
// in Routes.Leaders plus the default group), every snapshot holds:
//
//   - Listener "raftq": an api_listener (what a gRPC client asks for when it
//     dials xds:///raftq) whose HttpConnectionManager takes its routes from
//     RDS "raftq" over ADS, with the router filter.
//   - RouteConfiguration "raftq": one virtual host for every domain with,
//     in order, for each g in G a route matching header raftq-group exactly
//     equal to the decimal g → cluster "raftq-group-<g>"; a route for any
//     other value of the header → cluster "raftq-unknown-group"; and a route
//     for calls without the header → the default group's cluster. Route
//     timeouts are off (Envoy's default of 15 s would cut Fetch long-polls);
//     the client's own deadline applies.
//   - Cluster "raftq-group-<g>" for each g, and "raftq-unknown-group": type
//     EDS over ADS, round robin, HTTP/2 to the upstream (gRPC).
//   - ClusterLoadAssignment for each cluster: the leader's address, HEALTHY,
//     in one locality of weight 1 — or no endpoint at all while the leader is
//     unknown (""), and always none for the unknown-group cluster.
//
// A cluster with no endpoint fails calls at once with UNAVAILABLE ("no
// healthy upstream" in Envoy, "weighted-target: no targets to pick from"
// in grpc-go), which raftq clients already retry with back-off; so does a header
// naming a group the control plane does not (yet) know, rather than sending
// the call to the default group's leader, which does not hold that queue.
// A header value must be the canonical decimal ("7", not "07"). The
// default group always has its cluster: calls without the header fail
// UNAVAILABLE while Routes names no leader for it.
//
// Update refuses a malformed address (not host:port, no host, a host that
// is neither an IP address nor a host name, a port that is not a number in
// 1..65535, or a host name when Options.IPOnly is set, for Envoy)
// with an error naming the group, and publishes nothing: clients keep the
// last good snapshot. Every snapshot is checked for consistency (every
// referenced resource present, none left over) and every resource with
// Envoy's own proto validation (ValidateAll) before it is published.
//
// One snapshot serves every client: the cache keys snapshots by a node hash
// that maps every node to the same key, so one Update reaches all of them,
// whatever node id their bootstrap names. A snapshot's version is a hash of
// its resources, not a counter: the same routes have the same version on
// every broker and across restarts, so a version in a client's log or
// Envoy's config dump names the routes it holds. (A client that moves to
// another control plane gets that one's routes whatever version it names:
// the cache answers the first request on every new stream.)
//
// # Dependencies
//
// The resources are the Envoy v3 protos of
// github.com/envoyproxy/go-control-plane/envoy (v1.40.0, already required
// by envoy/ for validation; gRPC's xDS client is built on the same module).
// The ADS server and snapshot cache are the root module
// github.com/envoyproxy/go-control-plane v0.14.0 (pkg/cache/v3,
// pkg/server/v3): the newest release on the module proxy, whose own
// requirements (envoy v1.36.0, grpc v1.75.1) are older than raftq's, so
// adding it moves no other module (minimum version selection keeps
// envoy v1.40.0 and grpc v1.85.0). Writing the xDS protocol by hand (ACK/NACK
// per type, nonces, ADS ordering of CDS before EDS, holding EDS until every
// cluster is named) is exactly what that library exists for and what Envoy's
// own tests exercise; the snapshot cache in ADS mode gives the consistent,
// ordered pushes this package needs. The tests use grpc-go's xDS client
// (google.golang.org/grpc/xds, part of the grpc module raftq already
// requires) as the real client, since no Envoy binary can run here.
package xdsserver
