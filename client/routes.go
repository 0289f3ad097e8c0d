package client

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Routing to Raft groups. A cluster may run several Raft groups, each
// with its own leader (brokerd's --groups). Any broker serves any call,
// forwarding it to the leader of the group it is for, but that costs a
// hop; so the client keeps a route map — the group count and each group's
// leader, read from a broker's Status — and sends a call about a queue or
// a job straight to its group's leader. The group of a job id, and of a
// queue never moved, is computed (internal/placement), not looked up; a
// queue an operator moved (MoveQueue) goes to the group the map's
// placements name, which takes its new jobs (while it moves too: the
// broker there also serves the jobs left in the group it is leaving). The
// map is learned in the background after the first call, kept current by
// a WatchRoutes stream, corrected by NOT_LEADER hints, and read again when
// a group's leader stops answering. A map behind the placement table only
// costs a hop: brokers route every call by their own table. Calls that
// name no queue or job go where they always went: the leader of group 0.

// routes is the client's route map: leaders[g] is group g's leader ("":
// unknown); placed maps each queue an operator placed to the group that
// takes its new jobs (other queues: where their names hash). nil or one
// group: no routing.
type routes struct {
	leaders []string
	placed  map[string]int
}

// routeKey carries a call's routing key in its context.
type routeKey struct{}

// route is what a call is about: a queue, or a job id.
type route struct {
	queue, job string
}

func withQueueRoute(ctx context.Context, queue string) context.Context {
	if queue == "" {
		return ctx
	}
	return context.WithValue(ctx, routeKey{}, route{queue: queue})
}

func withJobRoute(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, routeKey{}, route{job: id})
}

// groupOf is the group ctx's call is for, when the cluster has several
// and the call names a queue or job.
func (c *Client) groupOf(ctx context.Context) (int, bool) {
	rt := c.routes.Load()
	if rt == nil || len(rt.leaders) < 2 {
		return 0, false
	}
	r, ok := ctx.Value(routeKey{}).(route)
	if !ok {
		return 0, false
	}
	if r.queue != "" {
		return rt.queueGroup(r.queue), true
	}
	g, err := placement.Job(r.job, len(rt.leaders))
	if err != nil {
		return 0, false
	}
	return int(g), true
}

// queueGroup is the group queue's calls go to: its placed group when an
// operator placed it, else where its name hashes.
func (rt *routes) queueGroup(queue string) int {
	if g, ok := rt.placed[queue]; ok {
		return g
	}
	return int(placement.Queue(queue, len(rt.leaders)))
}

// groupLeader is group g's leader as the client knows it ("": unknown).
func (c *Client) groupLeader(g int) string {
	if rt := c.routes.Load(); rt != nil && g < len(rt.leaders) {
		return rt.leaders[g]
	}
	return ""
}

// setGroupLeader records addr as group g's leader ("" forgets it, and
// has the map read again).
func (c *Client) setGroupLeader(g int, addr string) {
	for {
		old := c.routes.Load()
		if old == nil || g >= len(old.leaders) || old.leaders[g] == addr {
			break
		}
		nu := &routes{leaders: slices.Clone(old.leaders), placed: old.placed}
		nu.leaders[g] = addr
		if c.routes.CompareAndSwap(old, nu) {
			break
		}
	}
	if addr == "" {
		c.refreshRoutes()
	} else {
		c.mu.Lock()
		if !containsAddr(c.addrs, addr) {
			c.addrs = append(c.addrs, addr)
		}
		c.mu.Unlock()
	}
}

// learnRoutes takes the route map from a broker's Status.
func (c *Client) learnRoutes(st *raftqv1.StatusResponse) {
	c.takeRoutes(st.GetGroupCount(), st.GetGroups(), st.GetPlacements())
}

// takeRoutes installs a route map of count groups; the first map of a
// cluster of several groups starts the watch that keeps it current.
// placements are the queues an operator placed (a placement naming no
// group of the cluster is ignored: the hash, and the brokers' routing,
// still serve that queue).
func (c *Client) takeRoutes(count uint32, groups []*raftqv1.GroupStatus, placements []*raftqv1.Placement) {
	if count < 2 || len(groups) != int(count) {
		return
	}
	nu := &routes{leaders: make([]string, count)}
	for _, g := range groups {
		if int(g.GetGroup()) < len(nu.leaders) {
			nu.leaders[g.GetGroup()] = g.GetLeaderAddr()
		}
	}
	for _, p := range placements {
		if p.GetQueue() == "" || p.GetGroup() >= count {
			continue
		}
		if nu.placed == nil {
			nu.placed = make(map[string]int, len(placements))
		}
		nu.placed[p.GetQueue()] = int(p.GetGroup())
	}
	c.routes.Store(nu)
	c.watchOnce.Do(func() { go c.watchRoutes() })
}

// GroupLeaders returns the gRPC address of each Raft group's leader as the
// client knows it ("" for a group whose leader it does not know), or nil
// for a cluster of one group (or before the client has learned the map).
func (c *Client) GroupLeaders() []string {
	if rt := c.routes.Load(); rt != nil {
		return slices.Clone(rt.leaders)
	}
	return nil
}

// QueueGroup returns the Raft group whose leader the client sends calls
// about queue to, by its route map: the group an operator placed the
// queue in (MoveQueue; during a move, the group that takes its new jobs),
// else the group its name hashes to. ok is false for a cluster of one
// group (or before the client has learned the map), where no call is
// routed by group.
func (c *Client) QueueGroup(queue string) (group int, ok bool) {
	rt := c.routes.Load()
	if rt == nil || len(rt.leaders) < 2 {
		return 0, false
	}
	return rt.queueGroup(queue), true
}

// watchRoutes keeps the route map current with a WatchRoutes stream from
// any broker, so the client learns a group's new leader when it is elected
// rather than on its next failed or forwarded call. A broken stream is
// opened again on the next broker, after a back-off; the loop ends with
// the client.
func (c *Client) watchRoutes() {
	backoff := c.opts.MinBackoff
	for i := 0; ; i++ {
		if c.isClosed() {
			return
		}
		addrs := c.Addrs()
		addr := addrs[i%len(addrs)]
		if err := c.watchFrom(addr); err == nil {
			backoff = c.opts.MinBackoff // it ran; start over quickly
		}
		if c.sleepUnlessClosed(backoff) {
			return
		}
		if backoff *= 2; backoff > c.opts.MaxBackoff {
			backoff = c.opts.MaxBackoff
		}
	}
}

// watchFrom reads one WatchRoutes stream from addr until it breaks; nil
// when it delivered at least one map.
func (c *Client) watchFrom(addr string) error {
	cc, err := c.conn(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(c.closing, cancel)
	defer stop()
	st, err := raftqv1.NewClusterClient(cc).WatchRoutes(ctx, &raftqv1.WatchRoutesRequest{})
	if err != nil {
		return err
	}
	got := false
	for {
		r, err := st.Recv()
		if err != nil {
			if got {
				return nil
			}
			return err
		}
		got = true
		c.takeRoutes(r.GetGroupCount(), r.GetGroups(), r.GetPlacements())
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// sleepUnlessClosed waits d; true when the client closed meanwhile.
func (c *Client) sleepUnlessClosed(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.closing.Done():
		return true
	case <-t.C:
		return false
	}
}

// refreshRoutes reads the route map again from a broker, in the
// background, at most one read at a time and one per routeRefreshGap.
func (c *Client) refreshRoutes() {
	c.routeMu.Lock()
	if c.routeBusy || time.Since(c.routeAt) < routeRefreshGap {
		c.routeMu.Unlock()
		return
	}
	c.routeBusy, c.routeAt = true, time.Now()
	c.routeMu.Unlock()
	go func() {
		defer func() {
			c.routeMu.Lock()
			c.routeBusy = false
			c.routeMu.Unlock()
		}()
		for _, addr := range c.Addrs() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := c.Status(ctx, addr)
			cancel()
			if err == nil {
				c.learnRoutes(st)
				return
			}
		}
	}()
}

// routeRefreshGap spaces the route map's reads: after an election every
// call to the old leader fails at once, and one read serves them all.
const routeRefreshGap = 200 * time.Millisecond

// routeState is the Client's routing bookkeeping.
type routeState struct {
	routeMu   sync.Mutex
	routeBusy bool
	routeAt   time.Time
	// watchOnce starts the route watch; closing ends it (Close cancels
	// it).
	watchOnce   sync.Once
	closing     context.Context
	stopWatches context.CancelFunc
}

// groupLeaderHeader is brokerd.GroupLeaderHeader: "<group>=<address>",
// set by a broker that forwarded a call to its group's leader.
const groupLeaderHeader = "raftq-group-leader"

// learnGroupLeader takes a group's leader from a forwarding broker's
// header, so that the group's next calls skip the hop.
func (c *Client) learnGroupLeader(v string) {
	gs, addr, ok := strings.Cut(v, "=")
	g, err := strconv.Atoi(gs)
	if !ok || err != nil || addr == "" {
		return
	}
	if rt := c.routes.Load(); rt == nil || g < 0 || g >= len(rt.leaders) {
		// No map yet: the first probe reads one.
		return
	}
	c.setGroupLeader(g, addr)
}
