// Command workerd is the raftq worker daemon: it leases jobs from a broker
// cluster and runs them with its built-in handlers (echo, sleep, sha256,
// flaky, fail). SIGTERM or SIGINT shuts it down gracefully: it stops
// fetching, lets in-flight jobs finish up to --shutdown-timeout, and nacks
// the rest so other workers take them at once.
//
// It logs JSON lines to stderr; each attempt's start is a line with
// msg "job started", job_id and lease_token.
//
//	workerd --brokers 127.0.0.1:7101,127.0.0.1:7102 --queues default:8,slow:2 --metrics-addr :9102
//
// or, finding the brokers and the results service through etcd:
//
//	workerd --etcd http://10.0.0.9:2379 --queues default:8
//
// A pool of slots over several queues picked by weight (the broker's
// weighted selection; 6:3:1 here) is one entry joined by "|":
//
//	workerd --queues 'critical=6|default=3|low=1:10'
//
// With etcd endpoints set, brokers not given are found through the
// brokers' registrations (discovery/etcdresolver: the leader first,
// following leader changes), and an svcd not given through the svcd
// registrations (round-robin over the instances); every attempt's outcome
// is then stored in svcd before the ack. Without etcd and without
// --brokers, workerd dials make run's brokers (127.0.0.1:7101-7103); without --svcd, outcomes are not
// recorded.
//
// Settings come from defaults < a YAML file (--config) < RAFTQ_*
// environment variables < flags (internal/config); `workerd config` prints
// the effective configuration with where each value came from, secrets
// redacted. An invalid setting is reported with its key and reason, exit
// status 2, before anything starts.
//
//	workerd config [flags]       print the effective configuration
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/discovery"
	"github.com/raftq/raftq/discovery/etcdresolver"
	"github.com/raftq/raftq/internal/config"
	"github.com/raftq/raftq/internal/tracing"
	"github.com/raftq/raftq/internal/version"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/worker"
	"github.com/raftq/raftq/workerd"
	"google.golang.org/grpc"
)

// defaultBroker is dialled when neither brokers nor etcd.endpoints is set:
// the brokers `make run` starts (scripts/run-cluster.sh).
const defaultBroker = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "workerd")
		return
	}
	// Signals are caught from the start, so a SIGTERM during start-up is a
	// graceful stop too.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the exit: 0 after a clean shutdown (ctx cancelled),
// 1 on a failure at run time, 2 on invalid configuration (nothing
// started).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "config" {
		return runConfig(args[1:], stdout, stderr)
	}
	l := newLoader()
	l.FlagSet().SetOutput(stderr)
	_, s, err := load(l, args)
	if err != nil {
		return usageError(stderr, err)
	}
	if err := serve(ctx, s, stderr); err != nil {
		fmt.Fprintln(stderr, "workerd:", err)
		return 1
	}
	return 0
}

// usageError reports invalid configuration: one line per problem, each
// naming the key, and status 2. --help is not an error.
func usageError(w io.Writer, err error) int {
	if isHelp(err) {
		return 0
	}
	fmt.Fprintln(w, "workerd: invalid configuration:")
	for _, e := range unjoin(err) {
		fmt.Fprintf(w, "  %v\n", e)
	}
	return 2
}

// isHelp reports a --help request (the usage is already printed).
// config.Load turns every flag parse error, pflag.ErrHelp included, into a
// *config.Error that does not unwrap to it, so its reason is compared too.
func isHelp(err error) bool {
	var ce *config.Error
	return errors.Is(err, pflag.ErrHelp) || errors.As(err, &ce) && ce.Key == "flags" && ce.Reason == pflag.ErrHelp.Error()
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// keys are every workerd setting: its key (YAML path; RAFTQ_ + upper-cased
// key with '_' for '.' is its environment variable), its flag (names kept
// from before Viper: scripts and images depend on them), default and check.
func keys() []config.Key {
	nonNeg := func(v any) error {
		if v.(time.Duration) < 0 {
			return errors.New("must not be negative")
		}
		return nil
	}
	positive := func(v any) error {
		if v.(time.Duration) <= 0 {
			return errors.New("must be positive")
		}
		return nil
	}
	return append([]config.Key{
		{Name: "brokers", Flag: "brokers", Kind: config.List,
			Usage: "broker gRPC addresses host:port,... (when empty: found through etcd with etcd.endpoints, else " + defaultBroker + ")"},
		{Name: "queues", Flag: "queues", Kind: config.List, Default: []string{"default:4"}, Required: true,
			Usage: "queues to work as name:concurrency, comma-separated; a|b weighted pool as a=3|b=1:concurrency",
			Check: func(v any) error { _, err := workerd.ParseQueues(strings.Join(v.([]string), ",")); return err }},
		{Name: "worker.id", Flag: "worker-id", Kind: config.String, Usage: "worker id shown as the jobs' leased_by (default host-pid-random)"},
		{Name: "shutdown_timeout", Flag: "shutdown-timeout", Kind: config.Duration, Default: 30 * time.Second, Check: nonNeg,
			Usage: "how long in-flight jobs may finish after SIGTERM (0: 30s)"},
		{Name: "poll_wait", Flag: "poll-wait", Kind: config.Duration, Default: 30 * time.Second, Check: nonNeg, Usage: "long-poll wait of one fetch (0: 30s)"},
		{Name: "lease_duration", Flag: "lease-duration", Kind: config.Duration, Check: nonNeg, Usage: "override the jobs' lease duration (0 keeps theirs)"},
		{Name: "use_fetch", Flag: "use-fetch", Kind: config.Bool, Usage: "long-poll with Fetch instead of Consume streams (a broker without Consume gets Fetch anyway)"},
		{Name: "metrics.addr", Flag: "metrics-addr", Kind: config.String, Usage: "serve Prometheus /metrics on this host:port (empty: off)",
			Check: func(v any) error {
				if _, _, err := net.SplitHostPort(v.(string)); err != nil {
					return fmt.Errorf("%q: want host:port (like :9102)", v)
				}
				return nil
			}},
		{Name: "log.level", Flag: "log-level", Kind: config.String, Default: "info", Usage: "debug, info, warn or error",
			Check: func(v any) error { _, err := parseLevel(v.(string)); return err }},
		{Name: "svcd.addr", Flag: "svcd", Kind: config.String,
			Usage: "results service (svcd) gRPC address: each attempt's outcome is stored there before the ack (when empty: found through etcd with etcd.endpoints, else not recorded)"},
		{Name: "etcd.endpoints", Flag: "etcd", Kind: config.List,
			Usage: "etcd endpoints (http://host:port,...; https:// only, and over tls.*, when TLS is on): find the brokers and svcd registered there"},
		{Name: "etcd.prefix", Flag: "etcd-prefix", Kind: config.String, Default: discovery.DefaultPrefix, Usage: "cluster prefix of the etcd keys (the brokers' --etcd-prefix)",
			Check: func(v any) error { return discovery.ValidatePrefix(v.(string)) }},
		{Name: "etcd.username", Flag: "etcd-username", Kind: config.String, Usage: "etcd user"},
		{Name: "etcd.password", Flag: "etcd-password", Kind: config.String, Secret: true, Usage: "etcd password"},
		{Name: "tls.ca", Flag: "tls-ca", Kind: config.String, Usage: "CA certificate (PEM) that signs the brokers' and svcd's certificates: TLS on when set"},
		{Name: "tls.cert", Flag: "tls-cert", Kind: config.String, Usage: "client certificate (PEM) for mutual TLS"},
		{Name: "tls.key", Flag: "tls-key", Kind: config.String, Usage: "client key (PEM) for mutual TLS"},
		{Name: "auth.token_file", Flag: "token-file", Kind: config.String,
			Usage: "file holding the bearer token sent to brokers and svcd (needs TLS; surrounding whitespace ignored)"},
		{Name: "auth.token", Flag: "auth-token", Kind: config.String, Secret: true,
			Usage: "bearer token sent to brokers and svcd (needs TLS); as a flag other local users see it in ps: prefer --token-file"},
		{Name: "etcd.dial_timeout", Flag: "etcd-dial-timeout", Kind: config.Duration, Default: 5 * time.Second, Check: positive, Usage: "etcd connection timeout"},
	}, tracing.Keys()...)
}

func newLoader() *config.Loader { return config.New("workerd", keys()) }

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}

// settings is everything serve needs.
type settings struct {
	// cfg is the daemon's configuration without Brokers, Recorder and
	// Logger, which serve fills (they may need etcd).
	cfg   workerd.Config
	level slog.Level
	// tracing is the OpenTelemetry setup (tracing.* keys; off by default).
	tracing tracing.Config
	// brokers are the given broker addresses; empty means etcd (when
	// set) or defaultBroker.
	brokers []string
	// svcd is the given svcd address; empty means etcd (when set) or no
	// recording.
	svcd string
	etcd etcdSettings
	// tls and token secure the broker and svcd connections (nil/empty:
	// plaintext, no token).
	tls   *tls.Config
	token string
	// warnings are logged once the logger exists.
	warnings []string
}

// readTokenFile reads a bearer token from a file (what a secret mount or
// `make certs` writes): one token, surrounding whitespace ignored. A
// missing, unreadable or empty file, or one with several words, is an
// error naming the file.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return "", fmt.Errorf("%s is empty", path)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s holds more than one word; want the token alone", path)
	}
	return tok, nil
}

type etcdSettings struct {
	endpoints          []string
	prefix             string
	username, password string
	dialTimeout        time.Duration
}

// brokersFromEtcd and svcdFromEtcd say what etcd is used for: whatever was
// not given directly.
func (s settings) brokersFromEtcd() bool { return len(s.etcd.endpoints) > 0 && len(s.brokers) == 0 }
func (s settings) svcdFromEtcd() bool    { return len(s.etcd.endpoints) > 0 && s.svcd == "" }

func load(l *config.Loader, args []string) (*config.Values, settings, error) {
	v, err := l.Load(args)
	if err != nil {
		return nil, settings{}, err
	}
	if rest := l.FlagSet().Args(); len(rest) > 0 {
		return nil, settings{}, &config.Error{Key: "arguments", Reason: fmt.Sprintf("unexpected %q (subcommand: config)", rest)}
	}
	s, err := toSettings(l, v)
	return v, s, err
}

// toSettings maps loaded values onto the daemon's settings and checks what
// involves several keys, naming the key to change.
func toSettings(l *config.Loader, v *config.Values) (settings, error) {
	qs, _ := workerd.ParseQueues(strings.Join(v.List("queues"), ",")) // checked by its key
	lvl, _ := parseLevel(v.String("log.level"))
	s := settings{
		tracing: tracing.FromValues(v, "workerd"),
		cfg: workerd.Config{
			Queues:          qs,
			WorkerID:        v.String("worker.id"),
			ShutdownTimeout: v.Duration("shutdown_timeout"),
			PollWait:        v.Duration("poll_wait"),
			LeaseDuration:   v.Duration("lease_duration"),
			UseFetch:        v.Bool("use_fetch"),
			MetricsAddr:     v.String("metrics.addr"),
		},
		level:   lvl,
		brokers: v.List("brokers"),
		svcd:    v.String("svcd.addr"),
		etcd: etcdSettings{
			endpoints:   v.List("etcd.endpoints"),
			prefix:      v.String("etcd.prefix"),
			username:    v.String("etcd.username"),
			password:    v.String("etcd.password"),
			dialTimeout: v.Duration("etcd.dial_timeout"),
		},
	}
	if ca, cert, key := v.String("tls.ca"), v.String("tls.cert"), v.String("tls.key"); ca != "" || cert != "" || key != "" {
		if ca == "" {
			return s, l.Errorf("tls.ca", "required when tls.cert or tls.key is set")
		}
		if (cert == "") != (key == "") {
			return s, l.Errorf("tls.cert", "tls.cert and tls.key go together")
		}
		tc, err := client.LoadTLS(ca, cert, key)
		if err != nil {
			return s, l.Errorf("tls.ca", "%v", err)
		}
		s.tls = tc
		s.cfg.ClientOptions.TLS = tc
	}
	s.token = v.String("auth.token")
	if v.Source("auth.token") == config.FromFlag {
		s.warnings = append(s.warnings, "auth.token was given on the command line, where other local users can read it (ps, /proc): use --token-file")
	}
	if f := v.String("auth.token_file"); f != "" {
		if s.token != "" {
			return s, l.Errorf("auth.token_file", "set auth.token_file or auth.token, not both")
		}
		tok, err := readTokenFile(f)
		if err != nil {
			return s, l.Errorf("auth.token_file", "%v", err)
		}
		s.token = tok
	}
	if s.token != "" {
		if s.tls == nil {
			return s, l.Errorf("auth.token", "needs TLS (tls.ca): a bearer token is never sent in plaintext")
		}
		s.cfg.ClientOptions.Token = s.token
	}
	if len(s.etcd.endpoints) == 0 && (s.etcd.username != "" || s.etcd.password != "") {
		return s, l.Errorf("etcd.endpoints", "required when etcd credentials are set")
	}
	// With TLS on, etcd is reached over TLS with workerd's own TLS
	// settings (its certificate, when set, is its etcd client certificate).
	if err := l.CheckEtcdEndpoints("etcd.endpoints", s.etcd.endpoints, s.tls != nil); err != nil {
		return s, err
	}
	return s, nil
}

// discoveryNotes says, as YAML comments, what the empty brokers and
// svcd.addr keys mean for this configuration.
func discoveryNotes(s settings) string {
	var b strings.Builder
	switch {
	case len(s.brokers) > 0:
	case s.brokersFromEtcd():
		fmt.Fprintf(&b, "# brokers not set: found through etcd, target %s\n", etcdresolver.BrokersTarget(s.etcd.prefix))
	default:
		fmt.Fprintf(&b, "# brokers not set, nor etcd.endpoints: dialling %s\n", defaultBroker)
	}
	switch {
	case s.svcd != "":
	case s.svcdFromEtcd():
		fmt.Fprintf(&b, "# svcd.addr not set: found through etcd, target %s\n", etcdresolver.SvcdTarget(s.etcd.prefix))
	default:
		b.WriteString("# svcd.addr not set, nor etcd.endpoints: outcomes are not recorded\n")
	}
	return b.String()
}

// runConfig is `workerd config`: the effective configuration as YAML that
// --config accepts, each value commented with its source, secrets
// redacted, and what discovery will do.
func runConfig(args []string, stdout, stderr io.Writer) int {
	l := newLoader()
	l.FlagSet().SetOutput(stderr)
	l.FlagSet().Usage = func() {
		fmt.Fprintln(stderr, "usage: workerd config [flags]: print the effective configuration (secrets redacted)")
		l.FlagSet().PrintDefaults()
	}
	v, s, err := load(l, args)
	if err != nil {
		return usageError(stderr, err)
	}
	if err := v.Print(stdout); err != nil {
		fmt.Fprintln(stderr, "workerd:", err)
		return 1
	}
	fmt.Fprint(stdout, discoveryNotes(s))
	return 0
}

// serve runs the daemon until ctx is cancelled. Start order: the etcd
// client (when discovery needs it), the results client, the daemon (broker
// client, worker, metrics). Shutdown is the reverse: the daemon drains and
// closes its broker client, then the results client and etcd close.
func serve(ctx context.Context, s settings, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: s.level}))
	for _, w := range s.warnings {
		log.Warn(w)
	}
	cfg := s.cfg
	cfg.Logger = log
	cfg.Brokers = s.brokers
	// Tracing first and stopped last, so the spans of the final acks are
	// flushed. The worker takes otel's global provider, which Start sets.
	stopTracing, err := tracing.Start(ctx, s.tracing)
	if err != nil {
		return err
	}
	defer func() {
		if err := stopTracing(); err != nil {
			log.Warn("tracing: flushing spans at shutdown", "err", err)
		}
	}()
	if s.tracing.OTLPEndpoint != "" {
		log.Info("tracing on", "otlp_endpoint", s.tracing.OTLPEndpoint)
	}

	var ecli *clientv3.Client
	if s.brokersFromEtcd() || s.svcdFromEtcd() {
		var err error
		// Connects lazily: an etcd down at start delays discovery but
		// does not stop the daemon (the resolver keeps retrying).
		ecli, err = clientv3.New(clientv3.Config{
			Endpoints: s.etcd.endpoints, DialTimeout: s.etcd.dialTimeout,
			Username: s.etcd.username, Password: s.etcd.password, TLS: s.tls, Logger: zap.NewNop(),
		})
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		defer ecli.Close()
	}
	switch {
	case s.brokersFromEtcd():
		cfg.Brokers = []string{etcdresolver.BrokersTarget(s.etcd.prefix)}
		cfg.ClientOptions.DialOptions = append(cfg.ClientOptions.DialOptions, etcdresolver.BrokerDialOptions(ecli)...)
	case len(cfg.Brokers) == 0:
		cfg.Brokers = strings.Split(defaultBroker, ",")
	}

	var rc *results.Client
	var secure []grpc.DialOption
	if s.tls != nil {
		secure = append(secure, results.WithTLS(s.tls))
	}
	if s.token != "" {
		secure = append(secure, results.WithToken(s.token))
	}
	switch {
	case s.svcd != "":
		rc, err = results.Dial(s.svcd, secure...)
	case s.svcdFromEtcd():
		rc, err = results.DialTarget(etcdresolver.SvcdTarget(s.etcd.prefix), append(secure, etcdresolver.SvcdDialOptions(ecli)...)...)
	}
	if err != nil {
		return fmt.Errorf("svcd: %w", err)
	}
	var rec worker.Recorder
	if rc != nil {
		defer rc.Close()
		rec = workerd.ResultsRecorder{Client: rc}
	}
	cfg.Recorder = rec
	if ecli != nil {
		log.Info("discovery through etcd", "endpoints", s.etcd.endpoints, "prefix", s.etcd.prefix,
			"brokers", s.brokersFromEtcd(), "svcd", s.svcdFromEtcd())
	}
	d, err := workerd.New(cfg)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}
