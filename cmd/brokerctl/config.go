package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/liveconfig"
	"github.com/raftq/raftq/internal/tlsutil"
)

// configCmd is `brokerctl config`: the cluster's live settings in etcd
// (see internal/liveconfig). Every broker watches them and applies a
// change without a restart; a value a broker refuses is logged there and
// the previous one stays. brokerctl checks values before writing them.
func configCmd(g *globals) *cobra.Command {
	var endpoints, prefix string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show and change the cluster's live settings in etcd (queue defaults, caps, rates, log level)",
	}
	defEP := os.Getenv("RAFTQ_ETCD_ENDPOINTS")
	if defEP == "" {
		defEP = "http://127.0.0.1:7379" // make run's etcd (scripts/run-cluster.sh)
	}
	defPrefix := os.Getenv("RAFTQ_ETCD_PREFIX")
	if defPrefix == "" {
		defPrefix = discovery.DefaultPrefix
	}
	cmd.PersistentFlags().StringVar(&endpoints, "etcd", defEP, "etcd endpoints, comma-separated (env RAFTQ_ETCD_ENDPOINTS)")
	cmd.PersistentFlags().StringVar(&prefix, "etcd-prefix", defPrefix, "cluster prefix (env RAFTQ_ETCD_PREFIX)")
	var etcdTLS tlsutil.Files
	cmd.PersistentFlags().StringVar(&etcdTLS.CA, "etcd-tls-ca", os.Getenv("RAFTQ_ETCD_TLS_CA"), "CA (PEM) etcd's certificate is verified against: TLS to etcd, https endpoints only (env RAFTQ_ETCD_TLS_CA)")
	cmd.PersistentFlags().StringVar(&etcdTLS.Cert, "etcd-tls-cert", os.Getenv("RAFTQ_ETCD_TLS_CERT"), "client certificate (PEM) presented to etcd (env RAFTQ_ETCD_TLS_CERT)")
	cmd.PersistentFlags().StringVar(&etcdTLS.Key, "etcd-tls-key", os.Getenv("RAFTQ_ETCD_TLS_KEY"), "client key (PEM) presented to etcd (env RAFTQ_ETCD_TLS_KEY)")
	etcd := func() (*clientv3.Client, error) {
		if err := discovery.ValidatePrefix(prefix); err != nil {
			return nil, err
		}
		var tc *tls.Config
		if etcdTLS.Enabled() {
			src, err := tlsutil.Load(etcdTLS, nil)
			if err != nil {
				return nil, fmt.Errorf("--etcd-tls-*: %w", err)
			}
			tc = src.ClientTLSConfig()
		}
		var eps []string
		for _, e := range strings.Split(endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				eps = append(eps, e)
			}
		}
		if len(eps) == 0 {
			return nil, errors.New("--etcd: no endpoint")
		}
		for _, ep := range eps {
			if tc != nil && !strings.HasPrefix(ep, "https://") {
				return nil, fmt.Errorf("--etcd: %q is not https:// and --etcd-tls-* is set: the live config would go in clear", ep)
			}
		}
		var hosts []string
		for _, ep := range eps {
			if u, err := url.Parse(ep); err == nil && u.Host != "" {
				hosts = append(hosts, u.Host)
			} else {
				hosts = append(hosts, ep)
			}
		}
		if err := g.reachable("etcd endpoint", hosts); err != nil {
			return nil, err
		}
		return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, TLS: tc, Logger: zap.NewNop()})
	}

	show := &cobra.Command{
		Use:   "show",
		Short: "Print the live settings (and the registered brokers and leader)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, err := etcd()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := g.ctx()
			defer cancel()
			return showConfig(ctx, cmd.OutOrStdout(), cli, prefix, g.output == "json")
		},
	}

	var qf queueFlags
	setQueue := &cobra.Command{
		Use:   "queue NAME",
		Short: "Set a queue's settings (only the flags given change; 0 unsets a field)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := liveconfig.CheckQueueName(args[0]); err != nil {
				return err
			}
			return updateQueueConfig(g, cmd.OutOrStdout(), etcd, liveconfig.QueueKey(prefix, args[0]), cmd.Flags(), &qf)
		},
	}
	qf.add(setQueue.Flags())
	var df queueFlags
	setDefaults := &cobra.Command{
		Use:   "defaults",
		Short: "Set the settings of every queue that does not set its own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return updateQueueConfig(g, cmd.OutOrStdout(), etcd, liveconfig.DefaultsKey(prefix), cmd.Flags(), &df)
		},
	}
	df.add(setDefaults.Flags())
	setLevel := &cobra.Command{
		Use:   "log-level LEVEL",
		Short: "Set every broker's log level (debug, info, warn, error)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := liveconfig.ParseLogLevel(args[0]); err != nil {
				return err
			}
			cli, err := etcd()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := g.ctx()
			defer cancel()
			lvl := strings.ToLower(args[0])
			if _, err = cli.Put(ctx, liveconfig.LogLevelKey(prefix), lvl); err != nil {
				return err
			}
			b, _ := json.Marshal(lvl)
			return printSetting(g, cmd.OutOrStdout(), liveconfig.LogLevelKey(prefix), b)
		},
	}
	set := &cobra.Command{Use: "set", Short: "Change a live setting"}
	set.AddCommand(setQueue, setDefaults, setLevel)

	unset := &cobra.Command{
		Use:   "unset queue NAME | defaults | log-level",
		Short: "Remove a live setting (brokers go back to their own)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var key string
			switch {
			case args[0] == "queue" && len(args) == 2:
				if err := liveconfig.CheckQueueName(args[1]); err != nil {
					return err
				}
				key = liveconfig.QueueKey(prefix, args[1])
			case args[0] == "defaults" && len(args) == 1:
				key = liveconfig.DefaultsKey(prefix)
			case args[0] == "log-level" && len(args) == 1:
				key = liveconfig.LogLevelKey(prefix)
			default:
				return fmt.Errorf("unset: want `queue NAME`, `defaults` or `log-level`, got %q", args)
			}
			cli, err := etcd()
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := g.ctx()
			defer cancel()
			r, err := cli.Delete(ctx, key)
			if err != nil {
				return err
			}
			p, err := g.printer(cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return p.kv(map[string]any{"key": key, "deleted": r.Deleted > 0}, [][2]string{{"KEY", key}, {"DELETED", strconv.FormatBool(r.Deleted > 0)}})
		},
	}
	cmd.AddCommand(show, set, unset)
	return cmd
}

// printSetting reports a setting written: `KEY = VALUE`, or with -o json
// {"key": ..., "value": ...}.
func printSetting(g *globals, w io.Writer, key string, value []byte) error {
	if g.output == "json" {
		b, _ := json.MarshalIndent(map[string]any{"key": key, "value": json.RawMessage(value)}, "", "  ")
		_, err := fmt.Fprintln(w, string(b))
		return err
	}
	_, err := fmt.Fprintf(w, "%s = %s\n", key, value)
	return err
}

// queueFlags are the QueueConfig fields as flags.
type queueFlags struct {
	lease, initial, maxB time.Duration
	attempts, inflight   int
	burst, perKey        int
	rate, ratePerKey     float64
}

func (q *queueFlags) add(f *pflag.FlagSet) {
	f.DurationVar(&q.lease, "lease-duration", 0, "lease duration of jobs that set none")
	f.IntVar(&q.attempts, "max-attempts", 0, "max attempts of jobs that set none")
	f.DurationVar(&q.initial, "initial-backoff", 0, "first retry back-off of jobs that set none")
	f.DurationVar(&q.maxB, "max-backoff", 0, "largest retry back-off of jobs that set none")
	f.IntVar(&q.inflight, "max-in-flight", 0, "cap on the queue's leased jobs across all workers (0: none)")
	f.Float64Var(&q.rate, "rate", 0, "leases per second (0: unlimited)")
	f.IntVar(&q.burst, "burst", 0, "rate limiter bucket (0: the rate)")
	f.IntVar(&q.perKey, "max-in-flight-per-key", 0, "cap on each concurrency key's leased jobs across all workers (0: none)")
	f.Float64Var(&q.ratePerKey, "rate-per-key", 0, "leases per second of each concurrency key (0: unlimited)")
}

// updateQueueConfig changes the flags given in the QueueConfig at key,
// checks the result, and writes it only if nobody changed it meanwhile.
func updateQueueConfig(g *globals, w io.Writer, etcd func() (*clientv3.Client, error), key string, fs *pflag.FlagSet, q *queueFlags) error {
	given := 0
	fs.Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "lease-duration", "max-attempts", "initial-backoff", "max-backoff", "max-in-flight", "rate", "burst", "max-in-flight-per-key", "rate-per-key":
			given++
		}
	})
	if given == 0 {
		return errors.New("nothing to set: give at least one of --lease-duration, --max-attempts, --initial-backoff, --max-backoff, --max-in-flight, --max-in-flight-per-key, --rate, --rate-per-key, --burst")
	}
	cli, err := etcd()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := g.ctx()
	defer cancel()
	for {
		r, err := cli.Get(ctx, key)
		if err != nil {
			return err
		}
		var c liveconfig.QueueConfig
		cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if len(r.Kvs) > 0 {
			// A stored value that no longer parses is replaced by the new
			// fields alone.
			c, _ = liveconfig.ParseQueueConfig(r.Kvs[0].Value)
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", r.Kvs[0].ModRevision)
		}
		fs.Visit(func(f *pflag.Flag) {
			switch f.Name {
			case "lease-duration":
				c.LeaseDuration = liveconfig.Duration(q.lease)
			case "max-attempts":
				c.MaxAttempts = int32(q.attempts)
			case "initial-backoff":
				c.InitialBackoff = liveconfig.Duration(q.initial)
			case "max-backoff":
				c.MaxBackoff = liveconfig.Duration(q.maxB)
			case "max-in-flight":
				c.MaxInFlight = q.inflight
			case "rate":
				c.RatePerSec = q.rate
				if q.rate == 0 {
					c.Burst = 0
				}
			case "burst":
				c.Burst = q.burst
			case "max-in-flight-per-key":
				c.MaxInFlightPerKey = q.perKey
			case "rate-per-key":
				c.RatePerKey = q.ratePerKey
			}
		})
		if err := c.Validate(); err != nil {
			return fmt.Errorf("refused: %w", err)
		}
		// The brokers' default limits; a broker configured otherwise
		// refuses (and logs) what its own limits do not allow.
		if err := limits.DefaultBroker().CheckQueueDefaults(time.Duration(c.LeaseDuration), c.MaxAttempts); err != nil {
			return fmt.Errorf("refused: %w", err)
		}
		b, _ := json.Marshal(c)
		t, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return err
		}
		if t.Succeeded {
			return printSetting(g, w, key, b)
		}
	}
}

func showConfig(ctx context.Context, w io.Writer, cli *clientv3.Client, prefix string, asJSON bool) error {
	r, err := cli.Get(ctx, liveconfig.Root(prefix), clientv3.WithPrefix())
	if err != nil {
		return err
	}
	insts, err := discovery.Instances(ctx, cli, prefix, discovery.ServiceBrokers)
	if err != nil {
		return err
	}
	leader, hasLeader, _ := discovery.GetLeader(ctx, cli, prefix, discovery.ServiceBrokers)
	settings := map[string]json.RawMessage{}
	var keys []string
	for _, kv := range r.Kvs {
		k := strings.TrimPrefix(string(kv.Key), liveconfig.Root(prefix))
		keys = append(keys, k)
		if json.Valid(kv.Value) {
			settings[k] = kv.Value
		} else {
			b, _ := json.Marshal(string(kv.Value))
			settings[k] = b
		}
	}
	sort.Strings(keys)
	if asJSON {
		out := map[string]any{"prefix": prefix, "settings": settings, "brokers": insts}
		if hasLeader {
			out["leader"] = leader
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(w, string(b))
		return nil
	}
	fmt.Fprintf(w, "live settings under %s:\n", liveconfig.Root(prefix))
	if len(keys) == 0 {
		fmt.Fprintln(w, "  (none: every broker uses its own defaults, no caps or rate limits)")
	}
	for _, k := range keys {
		fmt.Fprintf(w, "  %-32s %s\n", k, settings[k])
	}
	fmt.Fprintf(w, "brokers registered under %s:\n", discovery.ServicePrefix(prefix, discovery.ServiceBrokers))
	for _, in := range insts {
		mark := ""
		if hasLeader && in.ID == leader.NodeID {
			mark = fmt.Sprintf("  leader (term %d)", leader.Term)
		}
		fmt.Fprintf(w, "  %-12s %s%s\n", in.ID, in.Addr, mark)
	}
	return nil
}
