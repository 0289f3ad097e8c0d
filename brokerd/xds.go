package brokerd

import (
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/internal/xdsserver"
)

// xDS (Config.XDS): the node serves Envoy's aggregated discovery service
// (internal/xdsserver) on its own gRPC port and publishes, for every Raft
// group, the gRPC address of the leader this node knows. Envoy (ADS) and
// proxyless gRPC clients (xds:///raftq) then send a call carrying the
// placement.Header straight to its group's leader, and learn of a new
// leader as soon as any node they are connected to does, instead of at
// their next health check. Every node publishes its own view, so a client
// may use any of them as its control plane.

// xdsResync is how often the publishing loop re-reads every group's leader
// without being woken. Leader observations wake it at once; the resync
// catches what they do not signal: a leader's gRPC address reaching this
// node's FSM after the leader change itself (a new node's announce), and
// an observation dropped because the wake-up channel was full (the
// observers never block Raft). Reading the leaders is cheap (a Raft lock
// and a read-only store view per group), and Update is a no-op when
// nothing changed.
const xdsResync = 200 * time.Millisecond

// serveXDS registers the ADS service on the node's gRPC server and starts
// the loop that keeps it up to date; nothing without Config.XDS. Called by
// serve before the server starts (gRPC refuses registrations after), once
// every group is open.
func (n *Node) serveXDS() {
	if !n.cfg.XDS {
		return
	}
	s := xdsserver.New(n.log, xdsserver.Options{Header: placement.Header, IPOnly: n.cfg.XDSIPOnly})
	s.Register(n.grpc)
	n.wg.Add(1)
	go n.publishLeaders(s)
}

// publishLeaders publishes every group's leader to s whenever it changes,
// until the node stops. It watches each group's Raft for leader
// observations (non-blocking, like the metrics' observer) and resyncs
// every xdsResync.
func (n *Node) publishLeaders(s *xdsserver.Server) {
	defer n.wg.Done()
	// ADS streams last as long as their clients: ending them when the
	// node stops lets the gRPC server's GracefulStop finish instead of
	// waiting out its timeout, and sends the clients to another broker.
	defer s.Stop()
	groups := n.Groups()
	// One slot: an observation is only a wake-up, the loop then reads
	// every group's leader afresh, so observations that arrive while one
	// is pending carry nothing new and may be dropped.
	wake := make(chan raft.Observation, 1)
	for _, gn := range groups {
		if gn == nil {
			continue // run elsewhere (Config.Replicas): the resync reads it
		}
		o := raft.NewObserver(wake, false, func(o *raft.Observation) bool {
			_, ok := o.Data.(raft.LeaderObservation)
			return ok
		})
		gn.raft.RegisterObserver(o)
		defer gn.raft.DeregisterObserver(o)
	}
	tick := time.NewTicker(xdsResync)
	defer tick.Stop()
	x := xdsState{warned: map[string]bool{}}
	for {
		// Once shutdown has begun (a host stops its other groups first,
		// and their Raft forgets its leader), nothing more is published:
		// clients must not see a stopping node's groups go leaderless.
		// Their streams end (Stop) and they keep the last routes until
		// another control plane answers.
		if n.ctx.Err() != nil {
			return
		}
		for _, gn := range n.localGroups() {
			if gn.ctx.Err() != nil {
				return
			}
		}
		routes := xdsserver.Routes{Leaders: make(map[uint32]string, len(groups))}
		for g := range groups {
			_, addr := n.anyGroup(uint32(g)).leader()
			routes.Leaders[uint32(g)] = x.publishable(n, uint32(g), addr)
		}
		if err := s.Update(routes); err != nil {
			// Update published nothing; clients keep the last routes. A
			// malformed address stays until its node re-announces, so
			// the error is logged once, not every resync.
			if msg := err.Error(); msg != x.lastErr {
				n.log.Error("xds: routes not published", "err", err)
				x.lastErr = msg
			}
		} else {
			x.lastErr = ""
		}
		select {
		case <-n.ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// xdsState is what publishLeaders remembers between rounds, to log each
// problem once.
type xdsState struct {
	warned  map[string]bool // addresses refused under XDSIPOnly
	lastErr string          // last Update error logged
}

// publishable is the address to publish for group g's leader addr. Under
// Config.XDSIPOnly a host name is published as "" (no endpoint: the
// group's calls fail UNAVAILABLE and clients retry) and logged once,
// rather than handed to Update, which would refuse the whole snapshot and
// freeze every other group's route with it.
func (x *xdsState) publishable(n *Node, g uint32, addr string) string {
	if addr == "" || !n.cfg.XDSIPOnly {
		return addr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr // malformed: Update says so
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return addr
	}
	if !x.warned[addr] {
		x.warned[addr] = true
		n.log.Warn("xds: a leader's gRPC address is a host name, which Envoy cannot use (xds.ip_only): its group is published without a leader; advertise an IP address (grpc.advertise)",
			"group", g, "addr", addr)
	}
	return ""
}
