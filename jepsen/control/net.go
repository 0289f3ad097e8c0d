package control

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// run runs a command and returns its error with the command's output.
func run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// inNS runs a command inside network namespace ns.
func inNS(ns string, args ...string) error {
	return run("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// output runs a command and returns its standard output.
func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}

// Network is the harness's private network: a hub namespace holding a
// bridge, one namespace per node with a veth into the bridge, and one veth
// from the harness's own (root) namespace into the bridge, so the harness's
// clients reach every node at its address while partitions are cut by
// iptables inside the nodes' namespaces. Only these namespaces ever see the
// addresses (198.18.0.0/24 by default: RFC 2544's benchmarking range, not a
// private or public range of anyone's).
type Network struct {
	Prefix string
	// Subnet is the first three octets, e.g. "198.18.0".
	Subnet string
	// Host is the harness's address on the bridge.
	Host string
	hub  string
	host string // root-namespace interface name
	nss  []string

	mu       sync.Mutex
	delayers map[int]*exec.Cmd // node index -> its packet delayer

	// lock is held from before the first namespace is touched until
	// Teardown has removed them all (see AcquireLock); nil once released.
	lock *HarnessLock
}

// NodeNS names node i's namespace.
func (nw *Network) NodeNS(i int) string { return fmt.Sprintf("%s-n%d", nw.Prefix, i) }

// NodeIP is node i's address.
func (nw *Network) NodeIP(i int) string { return fmt.Sprintf("%s.%d", nw.Subnet, i) }

// cleanupNetwork removes namespaces and the host interface left by an
// earlier run with the same prefix (a crashed run cannot clean up), killing
// any process still inside them: they are the harness's own. Unexported and
// called only with the harness lock held: run while another harness is
// live, it would kill that harness's nodes.
func cleanupNetwork(prefix string) {
	out, _ := output("ip", "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], prefix+"-") {
			continue
		}
		pids, _ := output("ip", "netns", "pids", f[0])
		for _, p := range strings.Fields(pids) {
			_ = run("kill", "-9", p)
		}
		_ = run("ip", "netns", "del", f[0])
	}
	_ = run("ip", "link", "del", prefix+"-h")
}

// SetupNetwork builds the network for n nodes. It first takes the harness
// lock at lockPath (DefaultLockPath if empty) and fails with
// ErrHarnessRunning, touching nothing, if another harness holds it: the
// cleanup of leftovers below cannot tell a crashed run's namespaces from a
// live run's. The lock is held until Teardown.
func SetupNetwork(prefix, subnet string, n int, lockPath string) (*Network, error) {
	lock, err := AcquireLock(lockPath)
	if err != nil {
		return nil, err
	}
	cleanupNetwork(prefix)
	nw := &Network{Prefix: prefix, Subnet: subnet, Host: subnet + ".254", hub: prefix + "-hub", host: prefix + "-h", delayers: map[int]*exec.Cmd{}, lock: lock}
	steps := [][]string{
		{"ip", "netns", "add", nw.hub},
		{"ip", "-n", nw.hub, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", nw.hub, "link", "set", "br0", "up"},
		{"ip", "link", "add", nw.host, "type", "veth", "peer", "name", "host", "netns", nw.hub},
		{"ip", "-n", nw.hub, "link", "set", "host", "master", "br0", "up"},
		{"ip", "addr", "add", nw.Host + "/24", "dev", nw.host},
		{"ip", "link", "set", nw.host, "up"},
	}
	nw.nss = append(nw.nss, nw.hub)
	for i := 1; i <= n; i++ {
		ns, port := nw.NodeNS(i), fmt.Sprintf("n%d", i)
		nw.nss = append(nw.nss, ns)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "-n", nw.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "-n", nw.hub, "link", "set", port, "master", "br0", "up"},
			[]string{"ip", "-n", ns, "addr", "add", nw.NodeIP(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			// Chains the nemeses fill and flush: JEPSEN-PART drops inbound
			// packets of cut peers, JEPSEN-LOSS drops at random.
			[]string{"ip", "netns", "exec", ns, "iptables", "-N", "JEPSEN-PART"},
			[]string{"ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-j", "JEPSEN-PART"},
			[]string{"ip", "netns", "exec", ns, "iptables", "-N", "JEPSEN-LOSS"},
			[]string{"ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-j", "JEPSEN-LOSS"},
			[]string{"ip", "netns", "exec", ns, "iptables", "-t", "mangle", "-N", "JEPSEN-DUP"},
			[]string{"ip", "netns", "exec", ns, "iptables", "-t", "mangle", "-A", "POSTROUTING", "-j", "JEPSEN-DUP"},
		)
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			nw.Teardown()
			return nil, err
		}
	}
	return nw, nil
}

// Teardown deletes the namespaces and the host interface, then releases
// the harness lock. A second call does nothing: once the lock is released
// another harness may own namespaces of the same prefix.
func (nw *Network) Teardown() {
	if nw.lock == nil {
		return
	}
	cleanupNetwork(nw.Prefix)
	nw.lock.Release()
	nw.lock = nil
}

// Cut makes node i drop every packet from the given peers' addresses.
// Cutting both sides (as Partition does) cuts both directions.
func (nw *Network) Cut(i int, peers []int) error {
	ns := nw.NodeNS(i)
	if err := inNS(ns, "iptables", "-F", "JEPSEN-PART"); err != nil {
		return err
	}
	for _, p := range peers {
		if err := inNS(ns, "iptables", "-A", "JEPSEN-PART", "-s", nw.NodeIP(p), "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// Loss makes node i drop inbound packets with probability p (0 clears).
func (nw *Network) Loss(i int, p float64) error {
	ns := nw.NodeNS(i)
	if err := inNS(ns, "iptables", "-F", "JEPSEN-LOSS"); err != nil || p <= 0 {
		return err
	}
	return inNS(ns, "iptables", "-A", "JEPSEN-LOSS", "-m", "statistic", "--mode", "random",
		"--probability", fmt.Sprintf("%.3f", p), "-j", "DROP")
}

// Duplicate makes node i send a second copy of its packets to each peer
// (and to the harness) with probability p (0 clears), through the TEE
// target: tc netem is not in this kernel.
func (nw *Network) Duplicate(i int, peers []int, p float64) error {
	ns := nw.NodeNS(i)
	if err := inNS(ns, "iptables", "-t", "mangle", "-F", "JEPSEN-DUP"); err != nil || p <= 0 {
		return err
	}
	dsts := []string{nw.Host}
	for _, q := range peers {
		dsts = append(dsts, nw.NodeIP(q))
	}
	for _, d := range dsts {
		if err := inNS(ns, "iptables", "-t", "mangle", "-A", "JEPSEN-DUP", "-d", d, "-m", "statistic", "--mode", "random",
			"--probability", fmt.Sprintf("%.3f", p), "-j", "TEE", "--gateway", d); err != nil {
			return err
		}
	}
	return nil
}

// Slow limits node i's outbound bandwidth with a token bucket (rate, e.g.
// "512kbit"); packets queue up to latency, then drop. This is how the
// harness delays packets: the kernel here has no netem, so delay comes from
// queueing behind the bucket, jitter from the load. "" clears it.
func (nw *Network) Slow(i int, rate, latency string) error {
	ns := nw.NodeNS(i)
	_ = inNS(ns, "tc", "qdisc", "del", "dev", "eth0", "root")
	if rate == "" {
		return nil
	}
	return inNS(ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "4kb", "latency", latency)
}

// HealNode clears every network fault of node i.
func (nw *Network) HealNode(i int) error {
	return joinErrs(nw.Cut(i, nil), nw.Loss(i, 0), nw.Duplicate(i, nil, 0), nw.Slow(i, "", ""), nw.Delay(i, "", 0, 0))
}

func joinErrs(errs ...error) error {
	var msgs []string
	for _, e := range errs {
		if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}
