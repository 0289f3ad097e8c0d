package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/tlsutil"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// runLeave is `brokerd leave`: remove a node from the cluster's voters. It
// reads the same configuration as the daemon (so `brokerd leave --config
// node.yaml` removes that node), and asks, in order, the brokers given with
// --brokers, those registered in etcd (leader first), or the node's own
// gRPC address. Any member forwards the removal to the leader.
func runLeave(args []string, stdout, stderr io.Writer) int {
	ks := keys()
	for i := range ks {
		ks[i].Required = ks[i].Name == "node.id"
	}
	ks = append(ks,
		config.Key{Name: "brokers", Flag: "brokers", Kind: config.List, Usage: "broker gRPC addresses to ask (default: etcd's registry, else grpc.addr)"},
		config.Key{Name: "leave.timeout", Flag: "timeout", Kind: config.Duration, Default: 30 * time.Second, Usage: "give up after this long"},
	)
	l := config.New("brokerd leave", ks)
	l.FlagSet().SetOutput(stderr)
	v, err := l.Load(args)
	if err != nil {
		return usageError(stderr, err)
	}
	id := v.String("node.id")
	ctx, cancel := context.WithTimeout(context.Background(), v.Duration("leave.timeout"))
	defer cancel()

	addrs := v.List("brokers")
	if len(addrs) == 0 && len(v.List("etcd.endpoints")) > 0 {
		ecfg := clientv3.Config{
			Endpoints: v.List("etcd.endpoints"), DialTimeout: v.Duration("etcd.dial_timeout"),
			Username: v.String("etcd.username"), Password: v.String("etcd.password"), Logger: zap.NewNop(),
		}
		f, err := etcdTLSFiles(l, v)
		if err != nil {
			return usageError(stderr, err)
		}
		if f.Enabled() {
			src, err := tlsutil.Load(f, nil)
			if err != nil {
				fmt.Fprintln(stderr, "brokerd leave: etcd tls:", err)
				return 2
			}
			ecfg.TLS = src.ClientTLSConfig()
		}
		cli, err := clientv3.New(ecfg)
		if err != nil {
			fmt.Fprintln(stderr, "brokerd leave: etcd:", err)
			return 1
		}
		addrs, err = discovery.Brokers(ctx, cli, v.String("etcd.prefix"))
		cli.Close()
		if err != nil {
			fmt.Fprintln(stderr, "brokerd leave: brokers from etcd:", err)
			return 1
		}
	}
	if len(addrs) == 0 {
		a := v.String("grpc.advertise")
		if a == "" {
			a = v.String("grpc.addr")
		}
		addrs = []string{a}
	}
	// With TLS on, the node's own certificate: a node may remove itself.
	creds := insecure.NewCredentials()
	if f := (tlsutil.Files{CA: v.String("tls.ca"), Cert: v.String("tls.cert"), Key: v.String("tls.key")}); f.Enabled() {
		src, err := tlsutil.Load(f, nil)
		if err != nil {
			fmt.Fprintln(stderr, "brokerd leave: tls:", err)
			return 2
		}
		creds = src.ClientCredentials()
	}
	if err := removeVoter(ctx, creds, addrs, id); err != nil {
		fmt.Fprintf(stderr, "brokerd leave: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s left the cluster\n", id)
	return 0
}

// removeVoter sends Cluster.Remove to each address until one answers; a
// NOT_LEADER answer that names the leader is followed once per round.
func removeVoter(ctx context.Context, creds credentials.TransportCredentials, addrs []string, id string) error {
	var last error
	for ctx.Err() == nil {
		for i := 0; i < len(addrs); i++ {
			addr := addrs[i]
			err := func() error {
				cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
				if err != nil {
					return err
				}
				defer cc.Close()
				cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				_, err = raftqv1.NewClusterClient(cc).Remove(cctx, &raftqv1.RemoveRequest{NodeId: id})
				return err
			}()
			if err == nil {
				return nil
			}
			last = fmt.Errorf("%s: %w", addr, err)
			if d := raftqerr.Detail(err); d != nil {
				switch d.Reason {
				case raftqv1.ErrorDetail_NOT_FOUND, raftqv1.ErrorDetail_WRONG_STATE, raftqv1.ErrorDetail_INVALID_ARGUMENT:
					return last // definite: retrying cannot help
				case raftqv1.ErrorDetail_NOT_LEADER:
					if d.LeaderAddr != "" && d.LeaderAddr != addr && !contains(addrs, d.LeaderAddr) {
						addrs = append(addrs, d.LeaderAddr)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
	if last == nil {
		last = errors.New("no broker answered")
	}
	return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
