// Package xdstest dials through grpc-go's own xDS client, for the tests of
// internal/xdsserver and of brokerd --xds: it links that client, which the
// servers themselves must not (internal/xdsserver's TestLinksNoXDSClient).
package xdstest

import (
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"
)

// Dial opens a channel to xds:///raftq through grpc-go's xDS client,
// bootstrapped to the control plane at cp with node id node, as a
// proxyless client would be. Each call builds a separate client (its own
// ADS stream), like a separate process; it is closed at cleanup.
func Dial(t testing.TB, cp, node string) *grpc.ClientConn {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q}
	}`, cp, node)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///raftq", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
