package raftlayer

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/testutil"
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

// transport is a real hashicorp/raft NetworkTransport over a Layer for
// node certificates (node.*).
func transport(t *testing.T, src *tlsutil.Source) (*Layer, *raft.NetworkTransport) {
	t.Helper()
	return transportWith(t, Config{TLS: src, NodeNames: []string{"node.*"}, Logger: quiet})
}

// transportWith is a real hashicorp/raft NetworkTransport over a Layer
// configured with cfg.
func transportWith(t *testing.T, cfg Config) (*Layer, *raft.NetworkTransport) {
	t.Helper()
	l, err := Listen("127.0.0.1:0", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: l, MaxPool: 2, Timeout: 5 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: testutil.LogWriter(t)}),
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

// waitRefused waits until l has counted at least want refusals (at
// least one when want is omitted): the listener counts after its side of
// the handshake returns, which may be after the peer saw the alert.
func waitRefused(t *testing.T, l *Layer, want ...uint64) {
	t.Helper()
	n := uint64(1)
	if len(want) > 0 {
		n = want[0]
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Refused() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d refusals counted, want %d", l.Refused(), n)
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
	if err := d.Write("node.n2", certgen.NodeOptions("n2")); err != nil {
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
	if _, err := Listen("0.0.0.0:0", "", Config{TLS: source(t, d, "node.n1"), Logger: quiet}); err == nil {
		t.Fatal("a wildcard bind without an advertise address was accepted")
	}
	noCert, err := tlsutil.Load(tlsutil.Files{CA: d.CAFile()}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("127.0.0.1:0", "", Config{TLS: noCert, Logger: quiet}); err == nil {
		t.Fatal("a layer without a certificate was accepted")
	}
	// A node must not serve Raft with a certificate that is not a node's,
	// nor with another node's.
	if _, err := Listen("127.0.0.1:0", "", Config{TLS: source(t, d, "svcd"), Logger: quiet}); err == nil {
		t.Fatal("a layer with the svcd certificate was accepted")
	}
	if _, err := Listen("127.0.0.1:0", "", Config{TLS: source(t, d, "node.n2"), LocalID: "n1", Logger: quiet}); err == nil {
		t.Fatal("node n1 started its Raft layer with node n2's certificate")
	}
	var _ net.Listener = (*Layer)(nil)
}

// TestOnlyNodeCertificatesSpeakRaft: certificates signed by the cluster's
// CA that are not node certificates (the SDK's client.crt, svcd.crt) are
// refused by the listener, and a node certificate whose node URI matches
// no node name pattern too; every refusal is counted, none reaches Raft,
// and the log holds one line for them all.
func TestOnlyNodeCertificatesSpeakRaft(t *testing.T) {
	d := dev(t)
	if err := d.Write("node.x9", func() certgen.Options { o := certgen.NodeOptions("x9"); o.CommonName = "intruder"; return o }()); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	l, tr := transportWith(t, Config{TLS: source(t, d, "node.n1"), NodeNames: []string{"node.*"},
		Logger: slog.New(slog.NewTextHandler(logs, nil)), LogInterval: time.Hour})
	got := answer(tr)
	for i, name := range []string{"client", "svcd", "node.x9"} {
		// A raw Raft client: plain TLS with the certificate, Raft's
		// framing on top (an AppendEntries).
		conn, err := tls.Dial("tcp", l.Addr().String(), source(t, d, name).ClientConfig("127.0.0.1", ALPN))
		if err == nil {
			_, _ = conn.Write([]byte{1, 0x80}) // rpcAppendEntries, an empty msgpack map
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil {
			t.Fatalf("%s: the listener answered", name)
		}
		waitRefused(t, l, uint64(i+1))
		if n := l.Refused(); n != uint64(i+1) {
			t.Fatalf("%s: %d refusals counted, want %d (err %v)", name, n, i+1, err)
		}
	}
	select {
	case <-got:
		t.Fatal("Raft received an RPC from a certificate that is not a node's")
	default:
	}
	// The first refusal's line may still be on its way: wait for it, then
	// there must be no other (the interval is an hour).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "refused incoming connection") && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "refused incoming connection"); n != 1 {
		t.Fatalf("%d refusal log lines for 3 refusals within the interval, want 1:\n%s", n, logs.String())
	}
}

// TestDialChecksTheNodeAtTheAddress: the dialer refuses a peer whose
// node certificate is for another node than the Raft configuration
// places at that address, and accepts the right one.
func TestDialChecksTheNodeAtTheAddress(t *testing.T) {
	d := dev(t)
	_, b := transport(t, source(t, d, "node.n3")) // listens with n3's certificate
	answer(b)
	peers := map[raft.ServerAddress]raft.ServerID{}
	l, err := Listen("127.0.0.1:0", "", Config{TLS: source(t, d, "node.n1"), NodeNames: []string{"node.*"}, Logger: quiet,
		PeerID: func(a raft.ServerAddress) (raft.ServerID, bool) { id, ok := peers[a]; return id, ok }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peers[b.LocalAddr()] = "n2" // the configuration says n2 lives there
	if c, err := l.Dial(b.LocalAddr(), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("dialled n2's address and accepted node n3's certificate")
	} else if !strings.Contains(err.Error(), "node n3") || l.Refused() != 1 {
		t.Fatalf("refusal %v (%d counted) does not name the node", err, l.Refused())
	}
	peers[b.LocalAddr()] = "n3"
	c, err := l.Dial(b.LocalAddr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dialling n3 at its address: %v", err)
	}
	c.Close()
}

// TestAcceptOnlyMembers: with Member set, a node certificate for a node
// that is not a member is refused by the listener; a member's passes.
func TestAcceptOnlyMembers(t *testing.T) {
	d := dev(t)
	l, tr := transportWith(t, Config{TLS: source(t, d, "node.n1"), NodeNames: []string{"node.*"}, Logger: quiet,
		Member: func(id raft.ServerID) bool { return id == "n2" }})
	got := answer(tr)
	_, n3 := transport(t, source(t, d, "node.n3"))
	if _, err := appendEntries(n3, tr.LocalAddr()); err == nil {
		t.Fatal("a node that is not a member sent AppendEntries")
	}
	waitRefused(t, l, 1)
	if l.Refused() != 1 {
		t.Fatalf("%d refusals counted, want 1", l.Refused())
	}
	_, n2 := transport(t, source(t, d, "node.n2"))
	if resp, err := appendEntries(n2, tr.LocalAddr()); err != nil || !resp.Success {
		t.Fatalf("a member's AppendEntries: %+v, %v", resp, err)
	}
	<-got
}

// TestNewOnGivenListenerAndDialer: a Layer built on a listener it did not
// bind dials through the function it was given (here one that counts and
// then dials TCP) and checks certificates as Listen's does; New refuses
// a missing listener and an unadvertisable one without an advertise
// address, and leaves a refused listener open for its owner.
func TestNewOnGivenListenerAndDialer(t *testing.T) {
	d := dev(t)
	_, b := transport(t, source(t, d, "node.n2"))
	answer(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	l, err := New(ln, nil, func(address string, timeout time.Duration) (net.Conn, error) {
		dials.Add(1)
		return net.DialTimeout("tcp", address, timeout)
	}, Config{TLS: source(t, d, "node.n1"), NodeNames: []string{"node.*"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := l.Dial(b.LocalAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if dials.Load() != 1 {
		t.Fatalf("the given dial function ran %d times, want 1", dials.Load())
	}
	// The same dialer against a peer of another CA: refused and counted.
	_, rogue := transport(t, source(t, dev(t), "node.n3"))
	if c, err := l.Dial(rogue.LocalAddr(), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("dialled a node of another CA")
	}
	if l.Refused() != 1 || dials.Load() != 2 {
		t.Fatalf("%d refusals after %d dials, want 1 after 2", l.Refused(), dials.Load())
	}

	if _, err := New(nil, nil, nil, Config{TLS: source(t, d, "node.n1"), Logger: quiet}); err == nil {
		t.Fatal("a layer without a listener")
	}
	wild, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	if _, err := New(wild, nil, nil, Config{TLS: source(t, d, "node.n1"), Logger: quiet}); err == nil {
		t.Fatal("a wildcard listener without an advertise address was accepted")
	}
	adv := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: wild.Addr().(*net.TCPAddr).Port}
	wl, err := New(wild, adv, nil, Config{TLS: source(t, d, "node.n1"), Logger: quiet})
	if err != nil {
		t.Fatalf("the same listener with an advertise address: %v (was it closed by the refusal?)", err)
	}
	if wl.Addr().String() != adv.String() {
		t.Fatalf("Addr %s, want the advertised %s", wl.Addr(), adv)
	}
	// wl has no dial function: it dials TCP itself.
	c, err = wl.Dial(b.LocalAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
