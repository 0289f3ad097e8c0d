package raftmux_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/raftlayer"
	"github.com/raftq/raftq/internal/raftmux"
	"github.com/raftq/raftq/internal/testutil"
	"github.com/raftq/raftq/internal/tlsutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// logFSM records every command it applies, in order.
type logFSM struct {
	mu      sync.Mutex
	entries []string
}

func (f *logFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return nil
}

func (f *logFSM) Entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries)
}

func (f *logFSM) Snapshot() (raft.FSMSnapshot, error) { return snapshot(f.Entries()), nil }

func (f *logFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var e []string
	if err := json.NewDecoder(rc).Decode(&e); err != nil {
		return err
	}
	f.mu.Lock()
	f.entries = e
	f.mu.Unlock()
	return nil
}

type snapshot []string

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}

// member is one node's Raft instance of one group, with the stores it
// restarts from.
type member struct {
	id    raft.ServerID
	fsm   *logFSM
	logs  *raft.InmemStore
	snaps *raft.InmemSnapshotStore
	r     *raft.Raft
	trans *raft.NetworkTransport
}

// start runs m's Raft over stream (a group's stream layer on its node's
// mux), on the stores m already has.
func (m *member) start(t *testing.T, stream raft.StreamLayer) {
	t.Helper()
	hlog := hclog.New(&hclog.LoggerOptions{Name: string(m.id), Output: testutil.LogWriter(t)})
	m.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 3, Timeout: 5 * time.Second, Logger: hlog})
	rc := raft.DefaultConfig()
	rc.LocalID = m.id
	rc.Logger = hlog
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	r, err := raft.NewRaft(rc, m.fsm, m.logs, m.logs, m.snaps, m.trans)
	if err != nil {
		t.Fatal(err)
	}
	m.r = r
}

// stop shuts m's Raft and transport down (which closes its group's
// listener on the node's mux).
func (m *member) stop() {
	if m.r != nil {
		_ = m.r.Shutdown().Error()
		_ = m.trans.Close()
		m.r = nil
	}
}

// startGroup runs group g on every node: stream(i) is node i's stream
// layer for g. Every member bootstraps the same configuration, as
// brokerd's --bootstrap-expect does.
func startGroup(t *testing.T, g uint32, nodes int, stream func(i int) raft.StreamLayer) []*member {
	t.Helper()
	members := make([]*member, nodes)
	var servers []raft.Server
	for i := range members {
		m := &member{id: raft.ServerID(fmt.Sprintf("n%d", i+1)), fsm: &logFSM{}, logs: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()}
		m.start(t, stream(i))
		t.Cleanup(m.stop)
		members[i] = m
		servers = append(servers, raft.Server{ID: m.id, Address: m.trans.LocalAddr()})
	}
	for _, m := range members {
		if err := m.r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			t.Fatalf("group %d: bootstrap %s: %v", g, m.id, err)
		}
	}
	return members
}

// apply commits data in the group through whichever member leads it,
// retrying while there is no leader (an election in progress).
func apply(t *testing.T, g uint32, members []*member, data string) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("group %d to commit %q", g, data), func() bool {
		for _, m := range members {
			if m.r != nil && m.r.State() == raft.Leader {
				return m.r.Apply([]byte(data), 5*time.Second).Error() == nil
			}
		}
		return false
	})
}

// waitReplicated waits until every running member of the group has
// applied want (sorted) and fails at once if one applied an entry of
// another group. A retried apply may commit an entry twice (the leader
// lost leadership after committing it), so entries are compared as sets;
// the order is Raft's business, but all members must share it.
func waitReplicated(t *testing.T, g uint32, members []*member, want []string) {
	t.Helper()
	testutil.WaitFor(t, 60*time.Second, fmt.Sprintf("group %d's entries on every member", g), func() bool {
		for _, m := range members {
			if m.r == nil {
				continue
			}
			got := m.fsm.Entries()
			for _, e := range got {
				if !strings.HasPrefix(e, fmt.Sprintf("g%d-", g)) {
					t.Fatalf("group %d's member %s applied %q: an entry of another group", g, m.id, e)
				}
			}
			slices.Sort(got)
			if !slices.Equal(slices.Compact(got), want) {
				return false
			}
		}
		return true
	})
	var first *member
	for _, m := range members {
		if m.r == nil {
			continue
		}
		if first == nil {
			first = m
		} else if !slices.Equal(m.fsm.Entries(), first.fsm.Entries()) {
			t.Fatalf("group %d: %s applied %v, %s applied %v", g, first.id, first.fsm.Entries(), m.id, m.fsm.Entries())
		}
	}
}

// commitEach applies n entries to each group, interleaved, and returns
// what each group must hold (sorted), added to have.
func commitEach(t *testing.T, groups map[uint32][]*member, from, n int, have map[uint32][]string) {
	t.Helper()
	for i := from; i < from+n; i++ {
		for g, members := range groups {
			e := fmt.Sprintf("g%d-%03d", g, i)
			apply(t, g, members, e)
			have[g] = append(have[g], e)
		}
	}
	for g := range have {
		slices.Sort(have[g])
	}
}

func listenMuxes(t *testing.T, n int) []*raftmux.Mux {
	t.Helper()
	muxes := make([]*raftmux.Mux, n)
	for i := range muxes {
		m, err := raftmux.Listen("127.0.0.1:0", "", testutil.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		muxes[i] = m
	}
	return muxes
}

// TestGroupsShareOneListenerPerNode: two 3-node Raft groups whose members
// share one mux per node elect leaders and commit independently, no entry
// reaches the other group, and stopping one group's member (closing its
// listener on that node's mux) neither stops the other group on that mux
// nor its own group, which refuses nothing but the stopped group's
// connections and takes the member back on the same mux.
func TestGroupsShareOneListenerPerNode(t *testing.T) {
	muxes := listenMuxes(t, 3)
	groups := map[uint32][]*member{}
	for _, g := range []uint32{1, 2} {
		groups[g] = startGroup(t, g, len(muxes), func(i int) raft.StreamLayer {
			s, err := muxes[i].StreamLayer(g)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	}
	have := map[uint32][]string{}
	commitEach(t, groups, 0, 10, have)
	for g, members := range groups {
		waitReplicated(t, g, members, have[g])
	}
	for i, m := range muxes {
		if n := m.Refused(); n != 0 {
			t.Fatalf("node %d's mux refused %d connections of the groups it serves", i+1, n)
		}
	}

	// Stop group 1's leader. Its node's mux still serves group 2.
	var down int
	testutil.WaitFor(t, 30*time.Second, "a leader of group 1", func() bool {
		down = slices.IndexFunc(groups[1], func(m *member) bool { return m.r.State() == raft.Leader })
		return down >= 0
	})
	stopped := groups[1][down]
	stopped.stop()
	commitEach(t, groups, 10, 10, have)
	for g, members := range groups {
		waitReplicated(t, g, members, have[g])
	}
	// Group 1's new leader keeps dialling the stopped member: that
	// node's mux refuses the group it no longer has.
	testutil.WaitFor(t, 30*time.Second, "the stopped group's connections refused", func() bool { return muxes[down].Refused() > 0 })

	// The member comes back on the same mux and catches up.
	s, err := muxes[down].StreamLayer(1)
	if err != nil {
		t.Fatalf("group 1 again on node %d's mux: %v", down+1, err)
	}
	stopped.fsm = &logFSM{} // a restarted process's FSM: Raft replays the log into it
	stopped.start(t, s)
	commitEach(t, groups, 20, 5, have)
	for g, members := range groups {
		waitReplicated(t, g, members, have[g])
	}
}

// TestGroupsOverMutualTLS: the same with raftlayer's mutual TLS on each
// group's listener and dialer, the handshake running after the mux's
// header; the layers check the node at each address (one address per
// node, whatever the group) and refuse nothing. A client certificate of
// the same CA, routed to a group by a valid header, is refused by that
// group's layer and reaches no Raft.
func TestGroupsOverMutualTLS(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	d, err := certgen.NewDev(t.TempDir(), "test CA", ids)
	if err != nil {
		t.Fatal(err)
	}
	muxes := listenMuxes(t, len(ids))
	nodeAt := map[raft.ServerAddress]raft.ServerID{}
	for i, m := range muxes {
		nodeAt[raft.ServerAddress(m.Addr().String())] = raft.ServerID(ids[i])
	}
	var layers []*raftlayer.Layer
	groups := map[uint32][]*member{}
	for _, g := range []uint32{1, 2} {
		groups[g] = startGroup(t, g, len(muxes), func(i int) raft.StreamLayer {
			ln, err := muxes[i].Listener(g)
			if err != nil {
				t.Fatal(err)
			}
			l, err := raftlayer.New(ln, nil, raftmux.Dialer(g), raftlayer.Config{
				TLS: source(t, d, "node."+ids[i]), LocalID: ids[i], NodeNames: []string{"node.*"},
				PeerID: func(a raft.ServerAddress) (raft.ServerID, bool) { id, ok := nodeAt[a]; return id, ok },
				Logger: testutil.Logger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			layers = append(layers, l)
			return l
		})
	}
	have := map[uint32][]string{}
	commitEach(t, groups, 0, 10, have)
	for g, members := range groups {
		waitReplicated(t, g, members, have[g])
	}
	for i, l := range layers {
		if n := l.Refused(); n != 0 {
			t.Fatalf("layer %d refused %d handshakes between nodes", i, n)
		}
	}

	// A client certificate through a valid header: the mux routes it,
	// group 2's layer on node 1 (layers[3]) refuses it.
	c, err := raftmux.Dial(muxes[0].Addr().String(), 2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, source(t, d, "client").ClientConfig("127.0.0.1", raftlayer.ALPN))
	if err := tc.Handshake(); err == nil {
		_, _ = tc.Write([]byte{0, 0x80}) // rpcAppendEntries, an empty msgpack map
		_, err = tc.Read(make([]byte, 1))
		if err == nil {
			t.Fatal("a client certificate's Raft RPC was answered over the mux")
		}
	}
	testutil.WaitFor(t, 10*time.Second, "group 2's layer on node 1 to refuse the client certificate", func() bool { return layers[3].Refused() == 1 })
	for i, l := range layers {
		if i != 3 && l.Refused() != 0 {
			t.Fatalf("layer %d refused %d: the client's connection reached another group", i, l.Refused())
		}
	}
	if muxes[0].Refused() != 0 {
		t.Fatalf("the mux refused %d: a valid header is the layer's to judge", muxes[0].Refused())
	}
}

func source(t *testing.T, d *certgen.Dev, name string) *tlsutil.Source {
	t.Helper()
	s, err := tlsutil.Load(tlsutil.Files{CA: d.CAFile(), Cert: d.CertFile(name), Key: d.KeyFile(name)}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
