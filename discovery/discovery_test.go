package discovery_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/etcdtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestValidatePrefix(t *testing.T) {
	for _, ok := range []string{"raftq", "a/b", "prod-1/raftq_x.y"} {
		if err := discovery.ValidatePrefix(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/raftq", "raftq/", "a//b", "a b", "ä"} {
		if err := discovery.ValidatePrefix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRegisterRejectsBadInput(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	good := discovery.Instance{ID: "n1", Addr: "127.0.0.1:1"}
	for name, f := range map[string]func() error{
		"nil client": func() error {
			_, err := discovery.Register(nil, "p", "brokers", good, discovery.RegisterOptions{})
			return err
		},
		"prefix": func() error {
			_, err := discovery.Register(c, "/p", "brokers", good, discovery.RegisterOptions{})
			return err
		},
		"service": func() error {
			_, err := discovery.Register(c, "p", "a/b", good, discovery.RegisterOptions{})
			return err
		},
		"id": func() error {
			_, err := discovery.Register(c, "p", "brokers", discovery.Instance{ID: "a/b", Addr: "x"}, discovery.RegisterOptions{})
			return err
		},
		"addr": func() error {
			_, err := discovery.Register(c, "p", "brokers", discovery.Instance{ID: "a"}, discovery.RegisterOptions{})
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if r, _ := c.Get(context.Background(), "p", clientv3.WithPrefix(), clientv3.WithCountOnly()); r.Count != 0 {
		t.Fatalf("bad registrations wrote %d keys", r.Count)
	}
}

// A registration appears with a lease, carries its metadata, and goes away
// at once on Close; a crashed instance's (unrevoked) key expires with its
// lease.
func TestRegisterLifecycle(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	p := s.Prefix("reg")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := discovery.Register(c, p, discovery.ServiceBrokers,
		discovery.Instance{ID: "n1", Addr: "127.0.0.1:7101", Meta: map[string]string{discovery.MetaRaftAddr: "127.0.0.1:7201"}},
		discovery.RegisterOptions{TTL: 2 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s.WaitKey(c, reg.Key(), true, 10*time.Second)
	insts, err := discovery.Instances(ctx, c, p, discovery.ServiceBrokers)
	if err != nil || len(insts) != 1 || insts[0].ID != "n1" || insts[0].Meta[discovery.MetaRaftAddr] != "127.0.0.1:7201" {
		t.Fatalf("instances %+v, %v", insts, err)
	}
	lease, _ := reg.Lease()
	if lease == 0 {
		t.Fatal("no lease reported")
	}
	// Kept alive well past its TTL.
	time.Sleep(3 * time.Second)
	if g, _ := c.Get(ctx, reg.Key()); len(g.Kvs) != 1 || clientv3.LeaseID(g.Kvs[0].Lease) != lease {
		t.Fatalf("key not kept alive on lease %x: %v", lease, g.Kvs)
	}
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if g, _ := c.Get(ctx, reg.Key()); len(g.Kvs) != 0 {
		t.Fatal("key still there after Close")
	}

	// A "crash": the key was written with a lease nobody keeps alive.
	g, _ := c.Grant(ctx, 2)
	key := discovery.InstanceKey(p, discovery.ServiceBrokers, "dead")
	c.Put(ctx, key, `{"Op":0,"Addr":"127.0.0.1:9"}`, clientv3.WithLease(g.ID))
	s.WaitKey(c, key, false, 10*time.Second)
}

// The key comes back by itself after etcd was down longer than the TTL,
// and after someone deleted it.
func TestRegistrationComesBack(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	p := s.Prefix("back")
	reg, err := discovery.Register(c, p, discovery.ServiceSvcd, discovery.Instance{ID: "s1", Addr: "127.0.0.1:7400"},
		discovery.RegisterOptions{TTL: 2 * time.Second, OpTimeout: time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(context.Background())
	s.WaitKey(c, reg.Key(), true, 10*time.Second)
	first, _ := reg.Lease()

	s.Stop()
	time.Sleep(4 * time.Second) // two TTLs without keep-alives
	s.Start()
	t0 := time.Now()
	s.WaitKey(c, reg.Key(), true, 20*time.Second)
	t.Logf("back %s after etcd restart", time.Since(t0))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.Delete(ctx, reg.Key())
	t0 = time.Now()
	s.WaitKey(c, reg.Key(), true, 20*time.Second)
	t.Logf("back %s after delete", time.Since(t0))
	if l, _ := reg.Lease(); l == 0 {
		t.Fatalf("no lease after recovery (first was %x)", first)
	}
}

// Brokers lists the leader first; a deposed leader (older term) cannot
// overwrite its successor's hint; DeleteLeader only removes its own.
func TestBrokersLeaderFirstAndHintFencing(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	p := s.Prefix("lead")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := discovery.Brokers(ctx, c, p); err == nil {
		t.Fatal("no brokers: want an error")
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		r, err := discovery.Register(c, p, discovery.ServiceBrokers, discovery.Instance{ID: id, Addr: id + ":1"}, discovery.RegisterOptions{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(ctx)
		s.WaitKey(c, r.Key(), true, 10*time.Second)
	}
	addrs, err := discovery.Brokers(ctx, c, p)
	if err != nil || len(addrs) != 3 || addrs[0] != "n1:1" {
		t.Fatalf("no leader: %v %v", addrs, err)
	}
	if ok, err := discovery.PutLeader(ctx, c, p, discovery.ServiceBrokers, discovery.Leader{NodeID: "n3", GRPCAddr: "n3:1", Term: 5}, 0); !ok || err != nil {
		t.Fatalf("put leader: %v %v", ok, err)
	}
	addrs, _ = discovery.Brokers(ctx, c, p)
	if len(addrs) != 3 || addrs[0] != "n3:1" {
		t.Fatalf("leader not first: %v", addrs)
	}
	if ok, _ := discovery.PutLeader(ctx, c, p, discovery.ServiceBrokers, discovery.Leader{NodeID: "n2", GRPCAddr: "n2:1", Term: 4}, 0); ok {
		t.Fatal("older term overwrote the hint")
	}
	if err := discovery.DeleteLeader(ctx, c, p, discovery.ServiceBrokers, "n2"); err != nil {
		t.Fatal(err)
	}
	if l, ok, _ := discovery.GetLeader(ctx, c, p, discovery.ServiceBrokers); !ok || l.NodeID != "n3" {
		t.Fatalf("another node's delete removed the hint: %+v %v", l, ok)
	}
	if err := discovery.DeleteLeader(ctx, c, p, discovery.ServiceBrokers, "n3"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := discovery.GetLeader(ctx, c, p, discovery.ServiceBrokers); ok {
		t.Fatal("hint still there after its leader deleted it")
	}
}
