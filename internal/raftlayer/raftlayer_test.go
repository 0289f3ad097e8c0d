package raftlayer

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/tlsutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func source(t *testing.T, d *certgen.Dev, name string) *tlsutil.Source {
	t.Helper()
	s, err := tlsutil.Load(tlsutil.Files{CA: d.CAFile(), Cert: d.CertFile(name), Key: d.KeyFile(name)}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dev(t *testing.T) *certgen.Dev {
	t.Helper()
	d, err := certgen.NewDev(t.TempDir(), "test CA", []string{"n1", "n2", "n3"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// transport is a real hashicorp/raft NetworkTransport over a Layer.
func transport(t *testing.T, src *tlsutil.Source) (*Layer, *raft.NetworkTransport) {
	t.Helper()
	l, err := Listen("127.0.0.1:0", "", src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: l, MaxPool: 2, Timeout: 5 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	t.Cleanup(func() { tr.Close() })
	return l, tr
}

// answer replies to every RPC the transport receives with an
// AppendEntriesResponse carrying term 7, and counts them.
func answer(tr *raft.NetworkTransport) chan struct{} {
	got := make(chan struct{}, 100)
	go func() {
		for rpc := range tr.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
			got <- struct{}{}
		}
	}()
	return got
}

func appendEntries(tr *raft.NetworkTransport, to raft.ServerAddress) (*raft.AppendEntriesResponse, error) {
	var resp raft.AppendEntriesResponse
	err := tr.AppendEntries("x", to, &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax},
		Term:      7, Entries: []*raft.Log{{Index: 1, Term: 7, Type: raft.LogCommand, Data: []byte("job")}},
	}, &resp)
	return &resp, err
}

func TestRaftRPCOverMutualTLS(t *testing.T) {
	d := dev(t)
	_, a := transport(t, source(t, d, "node.n1"))
	_, b := transport(t, source(t, d, "node.n2"))
	got := answer(b)
	resp, err := appendEntries(a, b.LocalAddr())
	if err != nil || !resp.Success || resp.Term != 7 {
		t.Fatalf("AppendEntries over TLS: %+v, %v", resp, err)
	}
	<-got
}

// TestForeignCertificateRefused: a node whose certificate comes from
// another CA can neither send Raft RPCs to the cluster nor receive them.
func TestForeignCertificateRefused(t *testing.T) {
	d, other := dev(t), dev(t)
	memberLayer, member := transport(t, source(t, d, "node.n1"))
	memberGot := answer(member)
	rogueLayer, rogue := transport(t, source(t, other, "node.n3"))
	rogueGot := answer(rogue)

	// The rogue sends: refused by the member's listener.
	if _, err := appendEntries(rogue, member.LocalAddr()); err == nil {
		t.Fatal("a member accepted AppendEntries from a node of another CA")
	}
	waitRefused(t, memberLayer)
	// The member sends: it does not trust the rogue's certificate.
	if _, err := appendEntries(member, rogue.LocalAddr()); err == nil {
		t.Fatal("a member sent AppendEntries to a node of another CA")
	}
	// Both refusals were the member's: once as listener, once as dialer.
	if n := memberLayer.Refused(); n < 2 {
		t.Fatalf("the member counted %d refusals, want 2 (rogue counted %d)", n, rogueLayer.Refused())
	}
	select {
	case <-memberGot:
		t.Fatal("the member's Raft received an RPC from the rogue")
	case <-rogueGot:
		t.Fatal("the rogue's Raft received an RPC from the member")
	default:
	}
}

func waitRefused(t *testing.T, l *Layer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Refused() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the refusal was never counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPlaintextRefused(t *testing.T) {
	d := dev(t)
	l, tr := transport(t, source(t, d, "node.n1"))
	got := answer(tr)
	// A plain TCP Raft client (what NewTCPTransport speaks).
	plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := appendEntries(plain, tr.LocalAddr()); err == nil {
		t.Fatal("a plaintext AppendEntries was answered")
	}
	waitRefused(t, l)
	select {
	case <-got:
		t.Fatal("Raft received a plaintext RPC")
	default:
	}
}

func TestRotationWithoutRestart(t *testing.T) {
	d := dev(t)
	srcB := source(t, d, "node.n2")
	lb, b := transport(t, srcB)
	answer(b)
	la, _ := transport(t, source(t, d, "node.n1"))
	first := peerSerial(t, la, lb)
	if err := d.Write("node.n2", certgen.LocalOptions("node.n2", true, true)); err != nil {
		t.Fatal(err)
	}
	if second := peerSerial(t, la, lb); second == first {
		t.Fatal("the listener still presents the certificate from before the rotation")
	}
}

func peerSerial(t *testing.T, from, to *Layer) string {
	t.Helper()
	c, err := from.Dial(raft.ServerAddress(to.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.(interface{ ConnectionState() tlsConnState }).ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestListenNeedsAdvertisableAddress(t *testing.T) {
	d := dev(t)
	if _, err := Listen("0.0.0.0:0", "", source(t, d, "node.n1"), quiet); err == nil {
		t.Fatal("a wildcard bind without an advertise address was accepted")
	}
	noCert, err := tlsutil.Load(tlsutil.Files{CA: d.CAFile()}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("127.0.0.1:0", "", noCert, quiet); err == nil {
		t.Fatal("a layer without a certificate was accepted")
	}
	var _ net.Listener = (*Layer)(nil)
}
