package admin

import (
	"context"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// prober tells the dashboard which members are reachable. The Raft
// configuration lists members whether they run or not (a SIGKILLed node
// stays a voter), and only a leader knows when it last heard a follower,
// so every admin server probes every member's gRPC API itself: each
// interval it asks its own node for the configuration, then calls
// Cluster.Status on each member with a short deadline. A member that
// answers anything (even "unauthenticated": it is alive) is up; one that
// refuses, resets or times out is down, with the time it last answered.
type prober struct {
	s        *Server
	interval time.Duration
	timeout  time.Duration

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn // by gRPC address
	health map[string]*NodeHealth      // by node id
	probed time.Time

	started bool // start ran (stop waits for the loop only then)
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// NodeHealth is one member as this node's probes see it.
type NodeHealth struct {
	NodeID   string `json:"node_id"`
	GRPCAddr string `json:"grpc_addr"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
	// Status is "up", "down" or "unknown" (not probed yet).
	Status string `json:"status"`
	// State, Term and AppliedIndex are what the member said about itself
	// (empty when it did not answer, or refused to without a token).
	State        string `json:"state,omitempty"`
	Term         uint64 `json:"term,omitempty"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	// LastContact is when it last answered a probe (nil: never, since this
	// admin server started).
	LastContact *time.Time `json:"last_contact,omitempty"`
	// Error is the last probe's failure.
	Error string `json:"error,omitempty"`
	// Self marks the node serving the page.
	Self bool `json:"self,omitempty"`
}

func newProber(s *Server, interval time.Duration) *prober {
	return &prober{s: s, interval: interval, timeout: min(interval, time.Second),
		conns: map[string]*grpc.ClientConn{}, health: map[string]*NodeHealth{},
		quit: make(chan struct{}), done: make(chan struct{})}
}

func (p *prober) start() {
	p.started = true
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			p.probe()
			select {
			case <-p.quit:
				return
			case <-t.C:
			}
		}
	}()
}

func (p *prober) stop() {
	p.once.Do(func() {
		close(p.quit)
		if p.started {
			<-p.done
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
}

func (p *prober) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.s.cfg.Credentials))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

// alive reports whether a call's error still proves the server answered.
func alive(err error) bool {
	switch status.Code(err) {
	case codes.OK, codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.ResourceExhausted, codes.FailedPrecondition:
		return true
	}
	return false
}

func (p *prober) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.timeout)
	defer cancel()
	// The node's own configuration, answered locally (no forwarding).
	self, err := p.s.cluster.Status(ctx, &raftqv1.StatusRequest{})
	if err != nil {
		// Refused (auth on without the node's certificate) or not up yet:
		// probe the members the cluster announced in its state instead.
		self = &raftqv1.StatusResponse{NodeId: p.s.cfg.Node.ID()}
		for _, m := range p.s.cfg.Node.FSM().Nodes() {
			self.Members = append(self.Members, &raftqv1.Member{NodeId: m.NodeID, GrpcAddr: m.GRPCAddr, RaftAddr: m.RaftAddr, Voter: true})
		}
		if len(self.Members) == 0 {
			return
		}
	}
	now := time.Now()
	type result struct {
		m  *raftqv1.Member
		st *raftqv1.StatusResponse
		ok bool
		e  error
	}
	results := make([]result, len(self.Members))
	var wg sync.WaitGroup
	for i, m := range self.Members {
		results[i].m = m
		if m.NodeId == self.NodeId && self.State != "" {
			results[i].st, results[i].ok = self, true
			continue
		}
		if m.GrpcAddr == "" {
			continue
		}
		wg.Add(1)
		go func(r *result) {
			defer wg.Done()
			c, err := p.conn(r.m.GrpcAddr)
			if err != nil {
				r.e = err
				return
			}
			cctx, ccancel := context.WithTimeout(ctx, p.timeout)
			defer ccancel()
			st, err := raftqv1.NewClusterClient(c).Status(cctx, &raftqv1.StatusRequest{}, grpc.WaitForReady(false))
			r.st, r.ok, r.e = st, alive(err), err
		}(&results[i])
	}
	wg.Wait()

	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.m.NodeId] = true
		h := p.health[r.m.NodeId]
		if h == nil {
			h = &NodeHealth{NodeID: r.m.NodeId}
			p.health[r.m.NodeId] = h
		}
		h.GRPCAddr, h.RaftAddr, h.Voter, h.Leader, h.Self = r.m.GrpcAddr, r.m.RaftAddr, r.m.Voter, r.m.Leader, r.m.NodeId == self.NodeId
		h.State, h.Term, h.AppliedIndex = "", 0, 0
		switch {
		case r.ok:
			h.Status, h.Error = "up", ""
			t := now
			h.LastContact = &t
			if r.st != nil {
				h.State, h.Term, h.AppliedIndex = r.st.State, r.st.Term, r.st.AppliedIndex
			}
		case r.m.GrpcAddr == "":
			h.Status, h.Error = "unknown", "no gRPC address announced"
		default:
			h.Status = "down"
			if s, ok := status.FromError(r.e); ok {
				h.Error = s.Message()
			} else if r.e != nil {
				h.Error = r.e.Error()
			}
		}
	}
	for id := range p.health {
		if !seen[id] {
			delete(p.health, id) // removed from the configuration
		}
	}
	p.probed = now
}

// nodes is the last probe's view, sorted by node id.
func (p *prober) nodes() ([]NodeHealth, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]NodeHealth, 0, len(p.health))
	for _, h := range p.health {
		c := *h
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, p.probed
}
