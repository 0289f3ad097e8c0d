// Package control runs a raftq cluster for the harness: every brokerd is a
// real process in its own network namespace with its own address and data
// dir, and svcd is a real process on the host's loopback. It starts, stops,
// kills (SIGKILL), pauses (SIGSTOP/SIGCONT), restarts and wipes nodes, cuts
// and degrades their links (iptables and tc inside their namespaces), and
// sets their test hooks (clock offset, crash points) through each node's
// control file, which brokerd built with the jepsen tag polls.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"

	"github.com/raftq/raftq/internal/freeport"
	"github.com/raftq/raftq/internal/placement"
)

// Options describe the cluster to run.
type Options struct {
	// Prefix names the namespaces and interfaces ("rqj").
	Prefix string
	// Subnet is the nodes' /24, first three octets ("198.18.0").
	Subnet string
	// Nodes is the number of voters bootstrapped; Spares more nodes are
	// provisioned for membership changes (joined later).
	Nodes, Spares int
	// BrokerdBin and SvcdBin are the binaries (brokerd built with -tags
	// jepsen for clock offsets and crash points).
	BrokerdBin, SvcdBin string
	// Dir is the run's directory: node data dirs, logs and control files go
	// under it.
	Dir string
	// Env is added to every brokerd's environment.
	Env []string
	// Groups is the Raft group count every brokerd runs (--groups); 0 or
	// 1: one group, and brokerd is started without the flag.
	Groups int
	// Replicas is how many nodes run each group but group 0 (brokerd
	// --replicas); 0: every node.
	Replicas int
	// Logger receives what the harness does to nodes.
	Logger *slog.Logger
	// LockPath is the harness lock file (DefaultLockPath if empty); only
	// tests set it, since two harnesses must agree on the file to exclude
	// each other.
	LockPath string
}

// Node is one brokerd: its identity, address, files and process.
type Node struct {
	Index    int
	ID       string
	NS       string
	IP       string
	GRPCAddr string
	RaftAddr string
	DataDir  string
	LogPath  string
	CtlPath  string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	paused   bool
	join     bool // start with --join (a spare, or wiped): never bootstrap
	clock    time.Duration
	fps      []string
	restarts int
}

// Cluster is the running system under test.
type Cluster struct {
	opts  Options
	Net   *Network
	Nodes []*Node
	// SvcdAddr is svcd's gRPC address (loopback).
	SvcdAddr string
	svcd     *exec.Cmd
	svcdDone chan struct{}
	// Workerds are the workerd processes, if any (AddWorkerds).
	Workerds []*Workerd
	log      *slog.Logger

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// New builds the network and the nodes' files; nothing runs yet.
func New(opts Options) (*Cluster, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	total := opts.Nodes + opts.Spares
	nw, err := SetupNetwork(opts.Prefix, opts.Subnet, total, opts.LockPath)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, Net: nw, log: opts.Logger, conns: map[string]*grpc.ClientConn{}}
	if err := c.makeNodes(total); err != nil {
		// The caller gets no Cluster to Shutdown: remove the network and
		// let go of the lock here, or they stay until the process exits.
		nw.Teardown()
		return nil, err
	}
	return c, nil
}

// makeNodes builds the nodes' records and files.
func (c *Cluster) makeNodes(total int) error {
	opts, nw := c.opts, c.Net
	for i := 1; i <= total; i++ {
		ip := nw.NodeIP(i)
		n := &Node{
			Index: i, ID: fmt.Sprintf("n%d", i), NS: nw.NodeNS(i), IP: ip,
			GRPCAddr: ip + ":7101", RaftAddr: ip + ":7201",
			DataDir: filepath.Join(opts.Dir, "nodes", fmt.Sprintf("n%d", i), "data"),
			LogPath: filepath.Join(opts.Dir, "nodes", fmt.Sprintf("n%d", i), "brokerd.log"),
			CtlPath: filepath.Join(opts.Dir, "nodes", fmt.Sprintf("n%d", i), "control"),
			join:    i > opts.Nodes,
		}
		if err := os.MkdirAll(filepath.Dir(n.DataDir), 0o755); err != nil {
			return err
		}
		if err := c.writeControl(n); err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, n)
	}
	return nil
}

// Node returns the node with the given id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Addrs are every node's gRPC address (clients rotate through them).
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.GRPCAddr)
	}
	return out
}

// Start starts n's brokerd unless it is running. A node that was
// bootstrapped starts with the bootstrap flags (ignored once its data dir
// holds Raft state); a spare or wiped node joins through the others.
func (c *Cluster) Start(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	args := []string{"netns", "exec", n.NS, c.opts.BrokerdBin,
		"--id", n.ID, "--data-dir", n.DataDir,
		"--raft-addr", n.RaftAddr, "--grpc-addr", n.GRPCAddr, "--log-level", "info"}
	if c.opts.Groups > 1 {
		// Every node, wiped and spare ones included, must run the same
		// count: a data dir refuses another one.
		args = append(args, "--groups", fmt.Sprint(c.opts.Groups))
		if c.opts.Replicas > 0 {
			args = append(args, "--replicas", fmt.Sprint(c.opts.Replicas))
		}
	}
	if n.join {
		var others []string
		for _, o := range c.Nodes {
			if o != n {
				others = append(others, o.GRPCAddr)
			}
		}
		args = append(args, "--join", strings.Join(others, ","))
	} else {
		var peers []string
		for _, o := range c.Nodes[:c.opts.Nodes] {
			peers = append(peers, o.ID+"="+o.RaftAddr)
		}
		args = append(args, "--bootstrap-expect", fmt.Sprint(c.opts.Nodes), "--peers", strings.Join(peers, ","))
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== jepsen: start %s (%s)\n", n.ID, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(append(os.Environ(), "RAFTQ_JEPSEN_CONTROL="+n.CtlPath), c.opts.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	n.cmd, n.done, n.paused = cmd, done, false
	n.restarts++
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "==== jepsen: %s exited: %v\n", n.ID, err)
		logf.Close()
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
		}
		n.mu.Unlock()
		close(done)
	}()
	c.log.Debug("started", "node", n.ID, "pid", cmd.Process.Pid, "join", n.join)
	return nil
}

// Running reports whether n's process is alive (paused counts).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Paused reports whether n is stopped by SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && n.paused
}

func (n *Node) signal(sig syscall.Signal) (chan struct{}, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return nil, false
	}
	_ = n.cmd.Process.Signal(sig)
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
	case syscall.SIGCONT:
		n.paused = false
	}
	return n.done, true
}

// Kill sends SIGKILL and waits for the process to be gone.
func (c *Cluster) Kill(n *Node) {
	if done, ok := n.signal(syscall.SIGKILL); ok {
		<-done
	}
}

// Stop shuts n down with SIGTERM (resuming it first if paused), and kills
// it if it has not exited after timeout.
func (c *Cluster) Stop(n *Node, timeout time.Duration) {
	n.signal(syscall.SIGCONT)
	done, ok := n.signal(syscall.SIGTERM)
	if !ok {
		return
	}
	select {
	case <-done:
	case <-time.After(timeout):
		c.Kill(n)
	}
}

// Pause stops n with SIGSTOP.
func (c *Cluster) Pause(n *Node) { n.signal(syscall.SIGSTOP) }

// Resume continues n with SIGCONT.
func (c *Cluster) Resume(n *Node) { n.signal(syscall.SIGCONT) }

// Wait waits up to d for n's process to exit by itself (a crash point);
// it reports whether it did.
func (c *Cluster) Wait(n *Node, d time.Duration) bool {
	n.mu.Lock()
	done := n.done
	running := n.cmd != nil
	n.mu.Unlock()
	if !running {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Wipe deletes n's data dir (n must be down) and marks it to join as a new
// member next time it starts: a wiped voter must never bootstrap again.
func (c *Cluster) Wipe(n *Node) error {
	if n.Running() {
		return fmt.Errorf("wipe %s: still running", n.ID)
	}
	n.mu.Lock()
	n.join = true
	n.mu.Unlock()
	return os.RemoveAll(n.DataDir)
}

// SetClock sets n's clock offset (through its control file).
func (c *Cluster) SetClock(n *Node, d time.Duration) error {
	n.mu.Lock()
	n.clock = d
	n.mu.Unlock()
	return c.writeControl(n)
}

// SetFailpoints arms n's crash points (none disarms them).
func (c *Cluster) SetFailpoints(n *Node, names ...string) error {
	n.mu.Lock()
	n.fps = append([]string(nil), names...)
	n.mu.Unlock()
	return c.writeControl(n)
}

func (c *Cluster) writeControl(n *Node) error {
	n.mu.Lock()
	body := fmt.Sprintf("clock_offset=%s\nfailpoints=%s\n", n.clock, strings.Join(n.fps, ","))
	n.mu.Unlock()
	tmp := n.CtlPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, n.CtlPath)
}

func (c *Cluster) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

// Conn is the harness's connection to n's gRPC port.
func (c *Cluster) Conn(n *Node) (*grpc.ClientConn, error) { return c.conn(n.GRPCAddr) }

// Status asks n for its view of the cluster (without the state hash).
func (c *Cluster) Status(ctx context.Context, n *Node) (*raftqv1.StatusResponse, error) {
	return c.status(ctx, n, &raftqv1.StatusRequest{})
}

// StatusWithHash is Status with the node's state hash, to compare replicas
// (the broker hashes only when asked: it reads its whole store).
func (c *Cluster) StatusWithHash(ctx context.Context, n *Node) (*raftqv1.StatusResponse, error) {
	return c.status(ctx, n, &raftqv1.StatusRequest{WithHash: true})
}

// GroupStatusWithHash is StatusWithHash for Raft group g of a node
// running several groups (the group named in the placement.Header
// metadata: that group's applied index, state and hash).
func (c *Cluster) GroupStatusWithHash(ctx context.Context, n *Node, g uint32) (*raftqv1.StatusResponse, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, placement.Header, strconv.FormatUint(uint64(g), 10))
	return c.status(ctx, n, &raftqv1.StatusRequest{WithHash: true})
}

func (c *Cluster) status(ctx context.Context, n *Node, req *raftqv1.StatusRequest) (*raftqv1.StatusResponse, error) {
	if !n.Running() {
		return nil, errors.New("not running")
	}
	if n.Paused() {
		return nil, errors.New("paused")
	}
	cc, err := c.conn(n.GRPCAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return raftqv1.NewClusterClient(cc).Status(ctx, req)
}

// Leader returns the node that claims leadership in the highest term, or
// nil when none does.
func (c *Cluster) Leader(ctx context.Context) *Node {
	var best *Node
	var term uint64
	for _, n := range c.Nodes {
		st, err := c.Status(ctx, n)
		if err == nil && st.State == "Leader" && st.Term >= term {
			best, term = n, st.Term
		}
	}
	return best
}

// GroupLeaders returns the leader of each Raft group (index: group) of a
// cluster running several groups: for each group, the node that claims
// to lead it in the highest term, nil where none does. Every node reports
// every group (StatusResponse.groups); a node's own state for a group is
// what counts, as Leader does for one group.
func (c *Cluster) GroupLeaders(ctx context.Context) []*Node {
	out := make([]*Node, max(c.opts.Groups, 1))
	terms := make([]uint64, len(out))
	for _, n := range c.Nodes {
		st, err := c.Status(ctx, n)
		if err != nil {
			continue
		}
		for _, g := range st.Groups {
			if int(g.Group) < len(out) && g.State == "Leader" && (out[g.Group] == nil || g.Term >= terms[g.Group]) {
				out[g.Group], terms[g.Group] = n, g.Term
			}
		}
		if len(st.Groups) == 0 && st.State == "Leader" && (out[0] == nil || st.Term >= terms[0]) {
			out[0], terms[0] = n, st.Term // one group: no per-group list
		}
	}
	return out
}

// WaitLeader waits up to d for a leader.
func (c *Cluster) WaitLeader(ctx context.Context, d time.Duration) (*Node, error) {
	deadline := time.Now().Add(d)
	for {
		if l := c.Leader(ctx); l != nil {
			return l, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("no leader after %s", d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Members returns the ids of the Raft configuration's voters, as the
// leader reports them.
func (c *Cluster) Members(ctx context.Context) ([]string, error) {
	l := c.Leader(ctx)
	if l == nil {
		return nil, errors.New("no leader")
	}
	st, err := c.Status(ctx, l)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range st.Members {
		if m.Voter {
			ids = append(ids, m.NodeId)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// StartSvcd starts svcd (SQLite in the run dir) on a free loopback port
// and waits until it answers.
func (c *Cluster) StartSvcd() error {
	grpcPort, err := freePort()
	if err != nil {
		return err
	}
	httpPort, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(c.opts.Dir, "svcd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "svcd.log"))
	if err != nil {
		return err
	}
	c.SvcdAddr = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	// Without broker verification: svcd here is the independent record
	// the fencing checker reads, so it must store what the workers send
	// (a zombie's stale write included, which verification would refuse
	// before the store and so hide the broker bugs jepsen looks for).
	cmd := exec.Command(c.opts.SvcdBin, "--listen-grpc", c.SvcdAddr,
		"--listen-http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--data-dir", dir, "--log-level", "warn",
		"--verify-brokers=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.svcd, c.svcdDone = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(c.svcdDone) }()
	for i := 0; i < 100; i++ {
		if cn, err := net.DialTimeout("tcp", c.SvcdAddr, 200*time.Millisecond); err == nil {
			cn.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("svcd did not start listening; see svcd/svcd.log")
}

// freePort returns a port below the ephemeral range, so that no outgoing
// connection takes it while its process is killed and restarted.
func freePort() (int, error) { return freeport.Port() }

// Shutdown stops every process and removes the network. Nodes are killed:
// the run is over and their data dirs stay for inspection.
func (c *Cluster) Shutdown() {
	for _, w := range c.Workerds {
		c.KillWorkerd(w)
	}
	for _, n := range c.Nodes {
		c.Kill(n)
	}
	if c.svcd != nil {
		_ = c.svcd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.svcdDone:
		case <-time.After(20 * time.Second):
			_ = c.svcd.Process.Kill()
		}
	}
	c.mu.Lock()
	for _, cc := range c.conns {
		cc.Close()
	}
	c.mu.Unlock()
	c.Net.Teardown()
}

// RemoveMember asks the leader (any node forwards) to remove id from the
// Raft configuration.
func (c *Cluster) RemoveMember(ctx context.Context, id string) error {
	l := c.Leader(ctx)
	if l == nil {
		return errors.New("no leader")
	}
	cc, err := c.conn(l.GRPCAddr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = raftqv1.NewClusterClient(cc).Remove(ctx, &raftqv1.RemoveRequest{NodeId: id})
	return err
}
