package etcdnode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/nodeid"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// This file is bootstrap through etcd (DESIGN.md, "Bootstrap and join"):
// the cluster record, the election that writes it once, acting on it
// (bootstrap as a named voter, or join), and joining through the
// registered brokers.

// ClusterRecord is what the bootstrap winner writes, once, under
// "<prefix>/bootstrap/cluster": the identity and initial voters of the
// cluster. Every listed voter bootstraps Raft with exactly these servers
// (identical bootstraps form one cluster); everyone else joins.
//
// With TLS on, the record names the cluster's CA (CA, the SHA-256 of its
// certificates): a node refuses a record written for another CA, so a
// record copied from another cluster (or written by anyone but a node of
// this one) cannot make it bootstrap. It also refuses a record that
// fails ClusterRecord.Validate.
type ClusterRecord struct {
	ClusterID string         `json:"cluster_id"`
	Voters    []brokerd.Peer `json:"voters"`
	// By is the node that won the bootstrap election.
	By        string    `json:"by"`
	CreatedAt time.Time `json:"created_at"`
	// CA is caFingerprint of the winner's CA file ("" without TLS).
	CA string `json:"ca_sha256,omitempty"`
}

// maxRecordVoters bounds a record's voters: a Raft cluster of more
// initial voters is no deployment raftq supports.
const maxRecordVoters = 15

// Validate reports what makes rec unusable: no cluster id, no voters or
// too many, a voter without a valid id or host:port, a voter id or
// address listed twice, or a winner (By) that is not a voter.
func (rec ClusterRecord) Validate() error {
	if rec.ClusterID == "" || len(rec.ClusterID) > 64 {
		return errors.New("cluster_id: missing or longer than 64 bytes")
	}
	if len(rec.Voters) == 0 || len(rec.Voters) > maxRecordVoters {
		return fmt.Errorf("voters: %d listed, want 1 to %d", len(rec.Voters), maxRecordVoters)
	}
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, v := range rec.Voters {
		if !nodeid.ValidID(v.ID) || len(v.ID) > 128 {
			return fmt.Errorf("voter id %q is not a valid node id", v.ID)
		}
		if host, port, err := net.SplitHostPort(v.RaftAddr); err != nil || host == "" || port == "" {
			return fmt.Errorf("voter %s: raft address %q is not host:port", v.ID, v.RaftAddr)
		}
		if ids[v.ID] || addrs[v.RaftAddr] {
			return fmt.Errorf("voter %s (%s) listed twice", v.ID, v.RaftAddr)
		}
		ids[v.ID], addrs[v.RaftAddr] = true, true
	}
	if !ids[rec.By] {
		return fmt.Errorf("by: %q is not one of the voters", rec.By)
	}
	return nil
}

// checkRecord refuses a record this node must not act on: invalid, for
// another CA, naming this node at another Raft address, or (bootstrapping
// with bootstrap.expect) with another number of voters.
func (e *Agent) checkRecord(rec ClusterRecord) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	voter := false
	for _, v := range rec.Voters {
		if v.ID == e.n.ID() {
			voter = true
			if v.RaftAddr != e.n.RaftAddr() {
				return fmt.Errorf("names this node (%s) at raft address %s, but it listens at %s", v.ID, v.RaftAddr, e.n.RaftAddr())
			}
		}
	}
	own := caFingerprint(e.boot.CAFile)
	switch {
	case rec.CA != "" && rec.CA != own:
		return fmt.Errorf("written for another cluster: its CA is %.16s…, this node's %.16s…", rec.CA, own)
	case voter && rec.CA != own:
		// Bootstrapping on a record without the CA would let whoever can
		// write etcd choose this node's first configuration.
		return errors.New("has no ca_sha256 but this node runs TLS: refusing to bootstrap from it")
	case voter && e.boot.Expect > 0 && len(rec.Voters) != e.boot.Expect:
		return fmt.Errorf("lists %d voters, bootstrap.expect is %d", len(rec.Voters), e.boot.Expect)
	}
	return nil
}

// caFingerprint is the hex SHA-256 of the DER certificates in the CA
// file (sorted, so a reordered bundle is the same CA), or "" without TLS
// (no file) or when the file cannot be read (TLS would not have started
// then).
func caFingerprint(file string) string {
	if file == "" {
		return ""
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	var ders [][]byte
	for {
		var b *pem.Block
		if b, raw = pem.Decode(raw); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
	slices.SortFunc(ders, bytes.Compare)
	h := sha256.New()
	for _, d := range ders {
		h.Write(d)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ClusterKey is where the ClusterRecord of prefix lives.
func ClusterKey(prefix string) string { return prefix + "/bootstrap/cluster" }

func electionKey(prefix string) string     { return prefix + "/bootstrap/election" }
func doneKey(prefix, nodeID string) string { return prefix + "/bootstrap/done/" + nodeID }

// etcdBootstrap forms the cluster with the other fresh nodes (see
// DESIGN.md): one node wins an etcd election, waits for Bootstrap.Expect
// registered brokers, and writes the ClusterRecord in a transaction that
// fails if one exists (or if it no longer leads the election). Every voter
// named in the record then bootstraps Raft with exactly those servers;
// nodes not named join through the registered brokers.
func (e *Agent) etcdBootstrap() {
	refused := ""
	for e.ctx.Err() == nil {
		rec, ok, err := e.readCluster()
		if err != nil {
			e.sleep(200 * time.Millisecond)
			continue
		}
		if ok {
			if err := e.checkRecord(rec); err != nil {
				// Logged once per record seen; the node waits for a record
				// it can trust (an operator deletes or fixes this one).
				if refused != rec.ClusterID+"|"+err.Error() {
					refused = rec.ClusterID + "|" + err.Error()
					e.log.Error("refusing the cluster record in etcd", "key", ClusterKey(e.prefix), "cluster", rec.ClusterID, "err", err)
				}
				e.sleep(time.Second)
				continue
			}
			e.adoptCluster(rec)
			return
		}
		err = e.campaignAndDecide()
		if errors.Is(err, errExistingCluster) {
			e.log.Warn("registered brokers already form a cluster but etcd has no cluster record; joining it")
			e.etcdJoin()
			return
		}
		if err != nil && e.ctx.Err() == nil {
			e.log.Debug("bootstrap election", "err", err)
			e.sleep(200 * time.Millisecond)
		}
	}
}

func (e *Agent) sleep(d time.Duration) {
	select {
	case <-e.ctx.Done():
	case <-time.After(d):
	}
}

func (e *Agent) readCluster() (ClusterRecord, bool, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	g, err := e.cli.Get(ctx, ClusterKey(e.prefix))
	if err != nil || len(g.Kvs) == 0 {
		return ClusterRecord{}, false, err
	}
	var rec ClusterRecord
	if err := json.Unmarshal(g.Kvs[0].Value, &rec); err != nil {
		return rec, false, fmt.Errorf("cluster record %s: %w", ClusterKey(e.prefix), err)
	}
	return rec, true, nil
}

// adoptCluster acts on the cluster record: bootstrap if this node is one
// of its voters and never bootstrapped before, join otherwise.
func (e *Agent) adoptCluster(rec ClusterRecord) {
	voter := false
	for _, p := range rec.Voters {
		if p.ID == e.n.ID() {
			voter = true
		}
	}
	if !voter {
		e.log.Info("cluster exists in etcd; joining", "cluster", rec.ClusterID)
		e.etcdJoin()
		return
	}
	// A voter that bootstrapped once and comes back without its Raft state
	// (a wiped disk) must not bootstrap again: the cluster has moved on.
	// It joins, and the leader brings it up to date.
	for e.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		g, err := e.cli.Get(ctx, doneKey(e.prefix, e.n.ID()), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			e.sleep(200 * time.Millisecond)
			continue
		}
		if g.Count > 0 {
			e.log.Warn("this node bootstrapped before but has no Raft state; joining instead", "cluster", rec.ClusterID)
			e.etcdJoin()
			return
		}
		break
	}
	if e.ctx.Err() != nil {
		return
	}
	var servers []raft.Server
	for _, p := range rec.Voters {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	err := e.n.BootstrapCluster(raft.Configuration{Servers: servers})
	switch {
	case err == nil:
		e.log.Info("bootstrapped new cluster", "peers", len(servers), "cluster", rec.ClusterID, "via", "etcd")
	case errors.Is(err, raft.ErrCantBootstrap):
		// State appeared meanwhile (a leader already replicated to us).
	default:
		e.log.Error("bootstrap through etcd failed", "err", err)
		return
	}
	for e.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		_, err := e.cli.Put(ctx, doneKey(e.prefix, e.n.ID()), rec.ClusterID)
		cancel()
		if err == nil {
			return
		}
		e.sleep(200 * time.Millisecond)
	}
}

// campaignAndDecide campaigns for the right to bootstrap. The winner waits
// for enough registered brokers and writes the cluster record; anyone
// (winner or not) returns as soon as a record exists.
func (e *Agent) campaignAndDecide() error {
	ttl := int((e.cfg.LeaseTTL + time.Second - 1) / time.Second)
	if ttl <= 0 {
		ttl = 10
	}
	sess, err := concurrency.NewSession(e.cli, concurrency.WithTTL(ttl), concurrency.WithContext(e.ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	// Stop campaigning once someone wrote the record.
	go func() {
		w := e.cli.Watch(ctx, ClusterKey(e.prefix), clientv3.WithCreatedNotify())
		for wr := range w {
			if len(wr.Events) > 0 {
				cancel()
				return
			}
			if wr.Created {
				if _, ok, _ := e.readCluster(); ok {
					cancel()
					return
				}
			}
		}
	}()
	el := concurrency.NewElection(sess, electionKey(e.prefix))
	if err := el.Campaign(ctx, e.n.ID()); err != nil {
		return err
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
	}()
	e.log.Info("won the bootstrap election; waiting for brokers", "expect", e.boot.Expect)
	for ctx.Err() == nil {
		voters, err := e.bootstrapVoters(ctx)
		if errors.Is(err, errExistingCluster) {
			return err
		}
		if err != nil || len(voters) < e.boot.Expect {
			e.sleep(100 * time.Millisecond)
			continue
		}
		rec := ClusterRecord{ClusterID: newClusterID(), Voters: voters, By: e.n.ID(), CreatedAt: time.Now().UTC(), CA: caFingerprint(e.boot.CAFile)}
		b, _ := json.Marshal(rec)
		key := ClusterKey(e.prefix)
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		t, err := e.cli.Txn(tctx).If(
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev()),
		).Then(clientv3.OpPut(key, string(b))).Commit()
		tcancel()
		if err != nil {
			return err
		}
		if t.Succeeded {
			ids := make([]string, len(voters))
			for i, v := range voters {
				ids[i] = v.ID
			}
			e.log.Info("wrote cluster record", "cluster", rec.ClusterID, "voters", ids)
		}
		return nil
	}
	return ctx.Err()
}

// errExistingCluster: a registered broker is already a member of a
// cluster, so there is nothing to bootstrap (the record was lost).
var errExistingCluster = errors.New("registered brokers already form a cluster")

// bootstrapVoters picks the initial voters among the registered brokers
// that answer and are still fresh (no Raft configuration): this node, then
// the others by id, Bootstrap.Expect in all. A registered broker that is
// already a member means a cluster exists without a record (etcd data
// lost, or the record deleted): errExistingCluster, never a second one.
func (e *Agent) bootstrapVoters(ctx context.Context) ([]brokerd.Peer, error) {
	insts, err := discovery.Instances(ctx, e.cli, e.prefix, discovery.ServiceBrokers)
	if err != nil {
		return nil, err
	}
	voters := []brokerd.Peer{{ID: e.n.ID(), RaftAddr: e.n.RaftAddr()}}
	for _, in := range insts {
		ra := in.Meta[discovery.MetaRaftAddr]
		if in.ID == e.n.ID() || ra == "" {
			continue
		}
		c, err := e.n.PeerConn(in.Addr)
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := raftqv1.NewClusterClient(c).Status(sctx, &raftqv1.StatusRequest{})
		cancel()
		if err != nil {
			continue // not answering (yet): not a candidate this round
		}
		if len(st.Members) > 0 {
			return nil, errExistingCluster
		}
		if len(voters) < e.boot.Expect {
			voters = append(voters, brokerd.Peer{ID: in.ID, RaftAddr: ra})
		}
	}
	sort.Slice(voters, func(i, j int) bool { return voters[i].ID < voters[j].ID })
	return voters, nil
}

func newClusterID() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36)
}

// etcdJoin asks the registered brokers (leader first) to add this node
// until one does, or until the node has Raft state some other way.
func (e *Agent) etcdJoin() {
	backoff := 100 * time.Millisecond
	for e.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		addrs, err := discovery.Brokers(ctx, e.cli, e.prefix)
		cancel()
		if err == nil {
			for _, addr := range addrs {
				if addr == e.n.GRPCAddr() {
					continue
				}
				ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
				err := e.n.JoinVia(ctx, addr)
				cancel()
				if err == nil {
					e.log.Info("joined cluster through etcd", "via", addr)
					return
				}
				e.log.Debug("join failed", "via", addr, "err", err)
			}
		}
		e.sleep(backoff)
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}
