// Command raftq-etcd runs an etcd server for development, tests and the
// local Docker stack: it wraps etcd's embedded server package
// (go.etcd.io/etcd/server/v3/embed), so no etcd binary or image is needed.
//
// A single node on loopback:
//
//	raftq-etcd --data-dir data/etcd
//
// One member of a three-node cluster (every member lists the same
// --initial-cluster):
//
//	raftq-etcd --name e1 --data-dir /data \
//	  --listen-client http://0.0.0.0:2379 --advertise-client http://e1:2379 \
//	  --listen-peer http://0.0.0.0:2380 --advertise-peer http://e1:2380 \
//	  --initial-cluster e1=http://e1:2380,e2=http://e2:2380,e3=http://e3:2380
//
// Addresses may be given as URLs or as host:port (http is assumed, or
// https with --cert-file). The flags are stable: scripts and compose files
// depend on them. SIGTERM or SIGINT stops the server cleanly (etcd closes
// its WAL and backend).
//
// Secured (what `RAFTQ_TLS=1 make run` starts):
//
//	raftq-etcd --data-dir data/etcd --cert-file etcd.crt --key-file etcd.key \
//	  --trusted-ca-file ca.crt --client-cert-allowed-cn node.n1,node.n2,node.n3,svcd,admin \
//	  --listen-client https://127.0.0.1:7379 --listen-peer https://127.0.0.1:7380
//
// With --cert-file, etcd serves clients over TLS only and requires a
// client certificate signed by --trusted-ca-file (mutual TLS): a caller
// without one can neither read nor write a key. --client-cert-allowed-cn
// narrows that to certificates with the listed common names (this
// server's own is added: its peer client presents it) and turns etcd's
// HTTP/JSON gateway off (etcd's gateway cannot pass that check; raftq
// and etcdctl speak gRPC). The
// peer port uses the same certificate and client-certificate auth when
// its URLs are https, and http URLs are refused: etcd would otherwise
// serve them in clear next to the TLS ones.
//
// It is not a replacement for a production etcd deployment: no RBAC, no
// tuning beyond what the flags expose.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/raftq/raftq/internal/version"
)

func main() {
	if version.Requested(os.Args[1:]) {
		version.Print(os.Stdout, "raftq-etcd")
		return
	}
	os.Exit(run(os.Args[1:]))
}

// options are the command-line settings.
type options struct {
	name            string
	dataDir         string
	listenClient    string
	advertiseClient string
	listenPeer      string
	advertisePeer   string
	initialCluster  string
	clusterState    string
	clusterToken    string
	logLevel        string
	readyTimeout    time.Duration
	certFile        string
	keyFile         string
	trustedCA       string
	allowedCNs      string
}

// secure reports whether TLS is asked for.
func (o *options) secure() bool { return o.certFile != "" || o.keyFile != "" || o.trustedCA != "" }

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("raftq-etcd", flag.ContinueOnError)
	fs.StringVar(&o.name, "name", "default", "member name (unique in the cluster)")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory of the WAL and the backend (required)")
	fs.StringVar(&o.listenClient, "listen-client", "127.0.0.1:2379", "client URLs to listen on, comma-separated (host:port: http, or https with --cert-file)")
	fs.StringVar(&o.advertiseClient, "advertise-client", "", "client URLs told to clients, comma-separated (default: --listen-client)")
	fs.StringVar(&o.listenPeer, "listen-peer", "127.0.0.1:2380", "peer URLs to listen on, comma-separated (host:port: http, or https with --cert-file)")
	fs.StringVar(&o.advertisePeer, "advertise-peer", "", "peer URLs told to other members, comma-separated (default: --listen-peer)")
	fs.StringVar(&o.initialCluster, "initial-cluster", "", "name=peer-url,... of every member at bootstrap (default: this member alone)")
	fs.StringVar(&o.clusterState, "initial-cluster-state", "new", "new (bootstrap) or existing (join a running cluster)")
	fs.StringVar(&o.clusterToken, "initial-cluster-token", "raftq-etcd", "token that keeps separate clusters apart at bootstrap")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	fs.StringVar(&o.certFile, "cert-file", "", "server certificate (PEM): serve clients (and https peers) over TLS only")
	fs.StringVar(&o.keyFile, "key-file", "", "private key (PEM) of --cert-file")
	fs.StringVar(&o.trustedCA, "trusted-ca-file", "", "CA (PEM) client certificates must be signed by: with --cert-file, every client must present one")
	fs.StringVar(&o.allowedCNs, "client-cert-allowed-cn", "", "common names, comma-separated, a client certificate must have one of (default: any from --trusted-ca-file)")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 5*time.Minute, "give up if the server is not ready (joined its cluster) within this")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.dataDir == "" {
		return nil, errors.New("--data-dir is required")
	}
	if o.secure() && (o.certFile == "" || o.keyFile == "" || o.trustedCA == "") {
		return nil, errors.New("--cert-file, --key-file and --trusted-ca-file go together: TLS without client-certificate auth would let anyone change raftq's live config")
	}
	if o.allowedCNs != "" && !o.secure() {
		return nil, errors.New("--client-cert-allowed-cn needs --cert-file, --key-file and --trusted-ca-file")
	}
	return o, nil
}

// parseURLs reads a comma-separated list of URLs or host:port pairs
// (scheme http, or https when secure); with secure, http URLs are
// refused.
func parseURLs(flagName, s string, secure bool) ([]url.URL, error) {
	scheme := "http://"
	if secure {
		scheme = "https://"
	}
	var out []url.URL
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "://") {
			part = scheme + part
		}
		u, err := url.Parse(part)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagName, err)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("--%s: %q has no host:port", flagName, part)
		}
		if secure && u.Scheme != "https" {
			return nil, fmt.Errorf("--%s: %q is not https while TLS is on (--cert-file)", flagName, part)
		}
		out = append(out, *u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--%s: no URL given", flagName)
	}
	return out, nil
}

// config turns the options into an embed.Config.
func (o *options) config() (*embed.Config, error) {
	cfg := embed.NewConfig()
	cfg.Name = o.name
	cfg.Dir = o.dataDir
	cfg.LogLevel = o.logLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.InitialClusterToken = o.clusterToken
	switch o.clusterState {
	case embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting:
		cfg.ClusterState = o.clusterState
	default:
		return nil, fmt.Errorf("--initial-cluster-state: want new or existing, got %q", o.clusterState)
	}
	var err error
	if cfg.ListenClientUrls, err = parseURLs("listen-client", o.listenClient, o.secure()); err != nil {
		return nil, err
	}
	if cfg.ListenPeerUrls, err = parseURLs("listen-peer", o.listenPeer, o.secure()); err != nil {
		return nil, err
	}
	cfg.AdvertiseClientUrls = cfg.ListenClientUrls
	if o.advertiseClient != "" {
		if cfg.AdvertiseClientUrls, err = parseURLs("advertise-client", o.advertiseClient, o.secure()); err != nil {
			return nil, err
		}
	}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	if o.advertisePeer != "" {
		if cfg.AdvertisePeerUrls, err = parseURLs("advertise-peer", o.advertisePeer, o.secure()); err != nil {
			return nil, err
		}
	}
	if o.secure() {
		tlsInfo, err := o.tlsInfo()
		if err != nil {
			return nil, err
		}
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = tlsInfo, tlsInfo
		if len(tlsInfo.AllowedCNs) > 0 {
			// etcd's JSON gateway calls the server with InsecureSkipVerify
			// and the server's own TLS settings, so the allowed-CN check
			// (run on the server's certificate, with no verified chain)
			// always fails it. raftq speaks gRPC only: the gateway goes.
			cfg.EnableGRPCGateway = false
		}
	}
	if o.initialCluster != "" {
		cfg.InitialCluster = o.initialCluster
	} else {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// tlsInfo is the TLS of the client and peer ports: this certificate,
// client certificates required and verified against the CA, and, with
// --client-cert-allowed-cn, only those names (and this server's own).
func (o *options) tlsInfo() (transport.TLSInfo, error) {
	info := transport.TLSInfo{CertFile: o.certFile, KeyFile: o.keyFile, TrustedCAFile: o.trustedCA, ClientCertAuth: true}
	if o.allowedCNs == "" {
		return info, nil
	}
	raw, err := os.ReadFile(o.certFile)
	if err != nil {
		return info, fmt.Errorf("--cert-file: %w", err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		return info, fmt.Errorf("--cert-file %s: no PEM certificate", o.certFile)
	}
	own, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return info, fmt.Errorf("--cert-file %s: %w", o.certFile, err)
	}
	// etcd's HTTP gateway and its peer client present this certificate.
	info.AllowedCNs = append(info.AllowedCNs, own.Subject.CommonName)
	for _, cn := range strings.Split(o.allowedCNs, ",") {
		if cn = strings.TrimSpace(cn); cn != "" && cn != own.Subject.CommonName {
			info.AllowedCNs = append(info.AllowedCNs, cn)
		}
	}
	return info, nil
}

func run(args []string) int {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "raftq-etcd:", err)
		return 2
	}
	cfg, err := o.config()
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftq-etcd: invalid configuration:", err)
		return 2
	}
	// Catch signals before starting, so one that arrives during start-up
	// still gets a clean close.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "raftq-etcd: start:", err)
		return 1
	}
	// Close stops the gRPC/HTTP servers, then the etcd server (WAL and
	// backend flushed and closed).
	defer e.Close()

	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintf(os.Stderr, "raftq-etcd: %s ready, clients on %s\n", o.name, urlsString(cfg.AdvertiseClientUrls))
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "raftq-etcd: %s before ready; stopping\n", s)
		return 0
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "raftq-etcd:", err)
		return 1
	case <-time.After(o.readyTimeout):
		fmt.Fprintf(os.Stderr, "raftq-etcd: not ready within %s (are the other members up?)\n", o.readyTimeout)
		return 1
	}

	select {
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "raftq-etcd: %s; stopping\n", s)
		return 0
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "raftq-etcd:", err)
		return 1
	case <-e.Server.StopNotify():
		fmt.Fprintln(os.Stderr, "raftq-etcd: server stopped")
		return 1
	}
}

func urlsString(us []url.URL) string {
	s := make([]string, len(us))
	for i := range us {
		s[i] = us[i].String()
	}
	return strings.Join(s, ",")
}
