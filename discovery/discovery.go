// Package discovery is raftq's phone book in etcd: brokerd and svcd
// instances register their addresses under a cluster prefix, each key tied
// to a lease that the instance keeps alive, and the Raft leader keeps a
// leader hint current. Clients read it to find brokers (leader first) and
// svcd instances, directly (Brokers, Instances) or through the gRPC
// resolver in discovery/etcdresolver.
//
// Nothing here is on the data path: a broker serves jobs whether etcd is up
// or not, and a registration lost while etcd was away is written again
// when it comes back.
//
// Key layout under a prefix P (no leading or trailing slash, e.g. "raftq"):
//
//	P/brokers/<node-id>   {"Op":0,"Addr":"<grpc addr>","Metadata":{...}}  lease
//	P/svcd/<instance-id>  the same, for svcd                              lease
//	P/leader/brokers      {"node_id":…,"grpc_addr":…,"raft_addr":…,"term":…} the leader's lease
//
// The instance records use the format of go.etcd.io/etcd/client/v3/naming/endpoints,
// so etcd's stock naming resolver can read them too.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
)

// Service names under a prefix.
const (
	// ServiceBrokers is where brokerd nodes register.
	ServiceBrokers = "brokers"
	// ServiceSvcd is where svcd instances register.
	ServiceSvcd = "svcd"
)

// DefaultPrefix is the cluster prefix daemons use when none is configured.
const DefaultPrefix = "raftq"

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

// ValidatePrefix reports why p cannot be a cluster prefix: it must be one
// or more path segments of letters, digits, '_', '.', '-', without leading
// or trailing slashes (gRPC targets are etcd:///<prefix>/brokers, and
// etcd's resolver strips exactly one slash).
func ValidatePrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("cluster prefix %q: want segments of [A-Za-z0-9_.-] separated by '/', no leading or trailing '/'", p)
	}
	return nil
}

// ServicePrefix is the key prefix (without trailing slash) that instances
// of service register under: "P/brokers".
func ServicePrefix(prefix, service string) string { return prefix + "/" + service }

// InstanceKey is the key of one instance.
func InstanceKey(prefix, service, id string) string {
	return ServicePrefix(prefix, service) + "/" + id
}

// LeaderKey is the leader hint of a service ("P/leader/brokers"). Only
// brokers have one.
func LeaderKey(prefix, service string) string { return prefix + "/leader/" + service }

// LeaderKeyForTarget returns the leader hint key of a service prefix
// ("P/brokers" → "P/leader/brokers").
func LeaderKeyForTarget(servicePrefix string) string {
	i := strings.LastIndex(servicePrefix, "/")
	if i < 0 {
		return "leader/" + servicePrefix
	}
	return servicePrefix[:i] + "/leader/" + servicePrefix[i+1:]
}

// PlacementPrefix is where the brokers mirror their placement table
// ("P/placement/"): one key per queue an operator moved or partitioned.
func PlacementPrefix(prefix string) string { return prefix + "/placement/" }

// PlacementKey is queue's mirrored placement ("P/placement/<queue>").
func PlacementKey(prefix, queue string) string { return PlacementPrefix(prefix) + queue }

// Placement is a queue's mirrored placement: the group that takes its new
// jobs, and while it moves the group it leaves (phase "sealing" or
// "draining"; "done" once moved); a partitioned queue's partitions. It is
// a copy for discovery (dashboards, proxies, other tools): brokers route
// by their own Raft-replicated table, never by this.
type Placement struct {
	Queue      string   `json:"queue"`
	Group      uint32   `json:"group"`
	FromGroup  uint32   `json:"from_group,omitempty"`
	Phase      string   `json:"phase"`
	Partitions []uint32 `json:"partitions,omitempty"`
}

// Instance is one registered server.
type Instance struct {
	// ID is unique within the service (a broker's node id).
	ID string
	// Addr is the gRPC address clients dial.
	Addr string
	// Meta carries other addresses (raft_addr, http_addr) and facts.
	Meta map[string]string
}

// Metadata keys brokerd and svcd set.
const (
	MetaRaftAddr = "raft_addr"
	MetaHTTPAddr = "http_addr"
)

// Leader is the leader hint: which broker leads, as of which Raft term.
type Leader struct {
	NodeID   string `json:"node_id"`
	GRPCAddr string `json:"grpc_addr"`
	RaftAddr string `json:"raft_addr,omitempty"`
	Term     uint64 `json:"term"`
}

// EncodeLeader is the leader hint's stored form.
func EncodeLeader(l Leader) string {
	b, _ := json.Marshal(l)
	return string(b)
}

// DecodeLeader reads a stored leader hint.
func DecodeLeader(b []byte) (Leader, error) {
	var l Leader
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("leader hint: %w", err)
	}
	if l.NodeID == "" || l.GRPCAddr == "" {
		return l, errors.New("leader hint: node_id and grpc_addr are required")
	}
	return l, nil
}

// encodeInstance is the endpoints-format record of inst.
func encodeInstance(inst Instance) (string, error) {
	meta := map[string]string{}
	for k, v := range inst.Meta {
		meta[k] = v
	}
	b, err := json.Marshal(struct {
		Op       endpoints.Operation
		Addr     string
		Metadata map[string]string
	}{endpoints.Add, inst.Addr, meta})
	return string(b), err
}

// DecodeInstance reads an instance record stored at key.
func DecodeInstance(key string, value []byte) (Instance, error) {
	var rec struct {
		Addr     string
		Metadata map[string]string
	}
	if err := json.Unmarshal(value, &rec); err != nil {
		return Instance{}, fmt.Errorf("instance %s: %w", key, err)
	}
	if rec.Addr == "" {
		return Instance{}, fmt.Errorf("instance %s: no address", key)
	}
	return Instance{ID: key[strings.LastIndex(key, "/")+1:], Addr: rec.Addr, Meta: rec.Metadata}, nil
}

// Instances lists the registered instances of service, sorted by id.
// Records that do not decode are skipped.
func Instances(ctx context.Context, cli *clientv3.Client, prefix, service string) ([]Instance, error) {
	r, err := cli.Get(ctx, ServicePrefix(prefix, service)+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []Instance
	for _, kv := range r.Kvs {
		inst, err := DecodeInstance(string(kv.Key), kv.Value)
		if err != nil {
			continue
		}
		out = append(out, inst)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// GetLeader reads the leader hint of service; ok is false when there is
// none (no leader, or it has not written one yet).
func GetLeader(ctx context.Context, cli *clientv3.Client, prefix, service string) (l Leader, ok bool, err error) {
	r, err := cli.Get(ctx, LeaderKey(prefix, service))
	if err != nil {
		return l, false, err
	}
	if len(r.Kvs) == 0 {
		return l, false, nil
	}
	l, err = DecodeLeader(r.Kvs[0].Value)
	if err != nil {
		return l, false, err
	}
	return l, true, nil
}

// Brokers returns the gRPC addresses of the registered brokers, the
// leader's first when a leader hint exists. It is what a client given
// --etcd instead of --brokers starts from: client.New(addrs, …).
func Brokers(ctx context.Context, cli *clientv3.Client, prefix string) ([]string, error) {
	insts, err := Instances(ctx, cli, prefix, ServiceBrokers)
	if err != nil {
		return nil, err
	}
	l, ok, err := GetLeader(ctx, cli, prefix, ServiceBrokers)
	if err != nil {
		return nil, err
	}
	var out []string
	if ok {
		out = append(out, l.GRPCAddr)
	}
	for _, in := range insts {
		if !ok || in.Addr != l.GRPCAddr {
			out = append(out, in.Addr)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no broker registered under %s", ServicePrefix(prefix, ServiceBrokers))
	}
	return out, nil
}

// PutLeader writes the leader hint of service with lease (so it goes away
// with the leader's registration), unless the stored hint is from a newer
// term: a deposed leader that has not noticed yet must not overwrite its
// successor. It reports whether the stored hint is now l.
func PutLeader(ctx context.Context, cli *clientv3.Client, prefix, service string, l Leader, lease clientv3.LeaseID) (bool, error) {
	key := LeaderKey(prefix, service)
	val := EncodeLeader(l)
	for i := 0; i < 5; i++ {
		g, err := cli.Get(ctx, key)
		if err != nil {
			return false, err
		}
		cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if len(g.Kvs) > 0 {
			kv := g.Kvs[0]
			if cur, err := DecodeLeader(kv.Value); err == nil && cur.Term > l.Term {
				return false, nil
			}
			if string(kv.Value) == val && clientv3.LeaseID(kv.Lease) == lease {
				return true, nil
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
		}
		var opts []clientv3.OpOption
		if lease != 0 {
			opts = append(opts, clientv3.WithLease(lease))
		}
		t, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, val, opts...)).Commit()
		if err != nil {
			return false, err
		}
		if t.Succeeded {
			return true, nil
		}
	}
	return false, errors.New("leader hint: too much contention")
}

// DeleteLeader removes the leader hint of service if it still names
// nodeID (a leader stepping down), leaving a successor's hint alone.
func DeleteLeader(ctx context.Context, cli *clientv3.Client, prefix, service, nodeID string) error {
	key := LeaderKey(prefix, service)
	g, err := cli.Get(ctx, key)
	if err != nil || len(g.Kvs) == 0 {
		return err
	}
	if cur, err := DecodeLeader(g.Kvs[0].Value); err == nil && cur.NodeID != nodeID {
		return nil
	}
	_, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", g.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(key)).Commit()
	return err
}
