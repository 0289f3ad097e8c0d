package main

import (
	"os"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/bearer"
)

// securityFlags are how brokerctl reaches a cluster with TLS and auth on:
// the CA that signed the brokers' certificates, an optional client
// certificate, and the bearer token (better from the environment than
// the command line, where other users' ps can read it).
func (g *globals) securityFlags(f *pflag.FlagSet) {
	f.StringVar(&g.tlsCA, "tls-ca", os.Getenv("RAFTQ_TLS_CA"), "CA certificate (PEM) the brokers' certificates are verified against; turns TLS on (env RAFTQ_TLS_CA)")
	f.StringVar(&g.tlsCert, "tls-cert", os.Getenv("RAFTQ_TLS_CERT"), "client certificate (PEM) for brokers that require one (env RAFTQ_TLS_CERT)")
	f.StringVar(&g.tlsKey, "tls-key", os.Getenv("RAFTQ_TLS_KEY"), "client key (PEM) (env RAFTQ_TLS_KEY)")
	f.StringVar(&g.token, "token", os.Getenv("RAFTQ_AUTH_TOKEN"), "bearer token sent with every call; prefer the env RAFTQ_AUTH_TOKEN")
}

// clientOptions are the client's TLS and token.
func (g *globals) clientOptions() (client.Options, error) {
	var o client.Options
	if g.tlsCA != "" || g.tlsCert != "" {
		cfg, err := client.LoadTLS(g.tlsCA, g.tlsCert, g.tlsKey)
		if err != nil {
			return o, err
		}
		o.TLS = cfg
	}
	o.Token = g.token
	return o, nil
}

// dial connects to one broker with the same TLS and token.
func (g *globals) dial(addr string) (*grpc.ClientConn, error) {
	o, err := g.clientOptions()
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20))}
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer.Credentials{Token: o.Token}))
	}
	return grpc.NewClient(addr, opts...)
}
