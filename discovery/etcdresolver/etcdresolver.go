// Package etcdresolver is a gRPC name resolver backed by raftq's registry
// in etcd (package discovery): a target "etcd:///<prefix>/<service>"
// resolves to the gRPC addresses of the service's registered instances and
// follows them as instances come and go.
//
// For brokers the leader (from the leader hint) comes first and is marked,
// so gRPC's default pick_first policy connects to the leader and moves to
// the next leader by itself when the hint changes (the old leader's address
// is re-marked, which makes pick_first start over from the top). For svcd,
// use round_robin (SvcdDialOptions) to spread calls over every instance.
//
// Usage with the raftq Go client (one line, the rest is unchanged):
//
//	cl, err := client.New([]string{etcdresolver.BrokersTarget(prefix)},
//		client.Options{DialOptions: etcdresolver.BrokerDialOptions(etcdClient)})
//
// The client still follows NOT_LEADER hints to direct addresses; the
// resolver target is its way back when those go away.
package etcdresolver

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/raftq/raftq/discovery"
)

// Scheme is the target scheme this resolver handles.
const Scheme = "etcd"

// BrokersTarget is the gRPC target of the brokers registered under prefix.
func BrokersTarget(prefix string) string {
	return Scheme + ":///" + discovery.ServicePrefix(prefix, discovery.ServiceBrokers)
}

// SvcdTarget is the gRPC target of the svcd instances registered under
// prefix.
func SvcdTarget(prefix string) string {
	return Scheme + ":///" + discovery.ServicePrefix(prefix, discovery.ServiceSvcd)
}

// BrokerDialOptions makes targets of this scheme resolvable on one
// connection (no global registration) with pick_first, the leader first.
func BrokerDialOptions(cli *clientv3.Client) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithResolvers(NewBuilder(cli))}
}

// SvcdDialOptions makes targets of this scheme resolvable and balances
// calls round-robin over every registered instance.
func SvcdDialOptions(cli *clientv3.Client) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithResolvers(NewBuilder(cli)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}
}

// NewBuilder returns a resolver builder reading from cli. Pass it with
// grpc.WithResolvers, or register it globally with resolver.Register.
func NewBuilder(cli *clientv3.Client) resolver.Builder { return &builder{cli: cli} }

type builder struct{ cli *clientv3.Client }

func (b *builder) Scheme() string { return Scheme }

type roleKey struct{}

// Role is the address attribute that marks the leader ("leader") and the
// others ("member"); changing it on an address makes pick_first treat it as
// a new address.
func Role(a resolver.Address) string {
	s, _ := a.Attributes.Value(roleKey{}).(string)
	return s
}

func (b *builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	svc := strings.TrimPrefix(target.URL.Path, "/")
	if svc == "" {
		svc = target.URL.Opaque
	}
	em, err := endpoints.NewManager(b.cli, svc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &etcdResolver{
		cli:       b.cli,
		cc:        cc,
		em:        em,
		svc:       svc,
		leaderKey: discovery.LeaderKeyForTarget(svc),
		ctx:       ctx,
		cancel:    cancel,
		insts:     map[string]string{},
		poke:      make(chan struct{}, 1),
	}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

type etcdResolver struct {
	cli       *clientv3.Client
	cc        resolver.ClientConn
	em        endpoints.Manager
	svc       string
	leaderKey string
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	poke      chan struct{}

	// Owned by run.
	insts  map[string]string // key → addr
	leader string            // leader's gRPC address, "" when unknown
	last   string
}

// run keeps watching the instances and the leader hint. Both watches are
// restarted after a failure (etcd away, compaction), re-reading the full
// state, so nothing is missed.
func (r *etcdResolver) run() {
	defer r.wg.Done()
	backoff := 100 * time.Millisecond
	for r.ctx.Err() == nil {
		err := r.watch()
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			r.cc.ReportError(err)
		}
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

func (r *etcdResolver) watch() error {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	wch, err := r.em.NewWatchChannel(ctx)
	if err != nil {
		return err
	}
	r.insts = map[string]string{}
	g, err := r.cli.Get(ctx, r.leaderKey)
	if err != nil {
		return err
	}
	r.leader = ""
	if len(g.Kvs) > 0 {
		if l, err := discovery.DecodeLeader(g.Kvs[0].Value); err == nil {
			r.leader = l.GRPCAddr
		}
	}
	lw := r.cli.Watch(ctx, r.leaderKey, clientv3.WithRev(g.Header.Revision+1))
	// The manager queues the instances it read before returning the
	// channel: take them now, so the first list sent is complete.
	select {
	case ups, ok := <-wch:
		if ok {
			r.apply(ups)
		}
	default:
	}
	r.push(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ups, ok := <-wch:
			if !ok {
				return nil
			}
			r.apply(ups)
			r.push(false)
		case wr, ok := <-lw:
			if !ok {
				return nil
			}
			if err := wr.Err(); err != nil {
				return err
			}
			for _, ev := range wr.Events {
				r.leader = ""
				if ev.Type == clientv3.EventTypePut {
					if l, err := discovery.DecodeLeader(ev.Kv.Value); err == nil {
						r.leader = l.GRPCAddr
					}
				}
			}
			r.push(false)
		case <-r.poke:
			r.push(true)
		}
	}
}

func (r *etcdResolver) apply(ups []*endpoints.Update) {
	for _, u := range ups {
		switch u.Op {
		case endpoints.Add:
			r.insts[u.Key] = u.Endpoint.Addr
		case endpoints.Delete:
			delete(r.insts, u.Key)
		}
	}
}

// push sends the current address list: the leader first (marked), the rest
// in key order. Unchanged lists are not sent again unless forced.
func (r *etcdResolver) push(force bool) {
	keys := make([]string, 0, len(r.insts))
	for k := range r.insts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var addrs []resolver.Address
	seen := map[string]bool{}
	if r.leader != "" {
		addrs = append(addrs, resolver.Address{Addr: r.leader, Attributes: attributes.New(roleKey{}, "leader")})
		seen[r.leader] = true
	}
	for _, k := range keys {
		a := r.insts[k]
		if seen[a] {
			continue
		}
		seen[a] = true
		addrs = append(addrs, resolver.Address{Addr: a, Attributes: attributes.New(roleKey{}, "member")})
	}
	var sig strings.Builder
	for _, a := range addrs {
		sig.WriteString(a.Addr + "=" + Role(a) + ";")
	}
	if !force && sig.String() == r.last {
		return
	}
	r.last = sig.String()
	eps := make([]resolver.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = resolver.Endpoint{Addresses: []resolver.Address{a}}
	}
	_ = r.cc.UpdateState(resolver.State{Addresses: addrs, Endpoints: eps})
}

// ResolveNow re-sends the current list (gRPC calls it after connection
// failures; the watches already keep the list current).
func (r *etcdResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

func (r *etcdResolver) Close() {
	r.cancel()
	r.wg.Wait()
}
