package brokerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/dispatch"
	"github.com/raftq/raftq/internal/proposer"
)

// DefaultDiskMinFreeBytes is the free space a node keeps in reserve on its
// data dir's filesystem (disk.min_free_bytes). Below it the node refuses
// new writes, so the space left is there for what cannot be refused: Raft's
// term and vote records (hashicorp/raft panics when it cannot persist a
// term), entries a new leader replicates, and snapshots.
const DefaultDiskMinFreeBytes = 64 << 20

// DefaultDiskCheckInterval is how often a node re-checks the free space of
// its data dir.
const DefaultDiskCheckInterval = time.Second

// DiskHealthService is the gRPC health service name a node reports SERVING
// while it can write to its data dir and NOT_SERVING while it refuses
// writes for lack of space. A leader that has to give up leadership asks
// its peers for it to pick one that can write; operators and load
// balancers may watch it too.
const DiskHealthService = "raftq.v1.Broker.writable"

// diskProbeFile is written and removed to learn whether a store that
// failed with ENOSPC or EDQUOT could write again (a quota is invisible to
// statfs).
const diskProbeFile = ".raftq-disk-probe"

// diskMonitor decides whether this node can take writes, from three
// sources: statfs of the data dir against the reserve (checked every
// interval, so the node refuses before the disk is actually full), the
// Raft stores' own write errors (raft.db: ENOSPC or EDQUOT seen by
// watchedStore), and the FSM store's (fsm.WriteError: Apply waits for
// space rather than skip a committed entry). While any says no, writes
// are refused at once with RESOURCE_EXHAUSTED naming the node and the
// path (the proposer's Gate), a leader hands leadership to a peer that
// can write, and reads go on. Everything resumes by itself when a check
// finds space again.
type diskMonitor struct {
	n        *Node
	dir      string
	min      int64
	interval time.Duration

	// free is the last statfs figure in bytes, -1 when unknown.
	free atomic.Int64
	// refusal is the error writes get while the node refuses them; nil
	// when it takes writes.
	refusal atomic.Pointer[error]
	// storeErr is the last ENOSPC/EDQUOT of the Raft stores, kept until a
	// store write or a probe write succeeds.
	storeErr atomic.Pointer[error]
	// warnedNoPeer keeps "no peer can take over" to one line per episode.
	warnedNoPeer atomic.Bool
	// kick asks the loop for a check now (a store write just failed).
	kick chan struct{}
	// refused tells the leader's hand-off duty that a check found the
	// data dir full.
	refused chan struct{}
}

// newDiskMonitor checks the data dir once, so a node that starts on a full
// disk refuses writes from its first request, and registers the disk
// metrics. The loop starts with startDisk, once gRPC serves.
func newDiskMonitor(n *Node) *diskMonitor {
	d := &diskMonitor{
		n:        n,
		dir:      n.cfg.DataDir,
		min:      n.cfg.DiskMinFreeBytes,
		interval: n.cfg.DiskCheckInterval,
		kick:     make(chan struct{}, 1),
		refused:  make(chan struct{}, 1),
	}
	if d.interval <= 0 {
		d.interval = DefaultDiskCheckInterval
	}
	d.free.Store(-1)
	d.check()
	n.metrics.per.MustRegister(diskCollector{d})
	return d
}

// startDisk starts the check loop and publishes DiskHealthService.
func (n *Node) startDisk() {
	n.disk.publish(n.disk.refusal.Load() == nil)
	n.wg.Add(1)
	go n.disk.loop()
}

func (d *diskMonitor) loop() {
	defer d.n.wg.Done()
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		select {
		case <-d.n.ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
		d.check()
	}
}

// statfsFree is the space an unprivileged writer may still use on the
// filesystem holding dir (f_bavail: root's reserved blocks excluded).
func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// isDiskFull reports whether err is the filesystem refusing space.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// probeWrite writes, syncs and removes a small file in dir: whether a
// store that failed for lack of space could write again.
func probeWrite(dir string) error {
	name := filepath.Join(dir, diskProbeFile)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, 64<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	_ = os.Remove(name)
	return err
}

// check re-reads the three sources and moves the node between taking and
// refusing writes. A leader that refuses hands leadership off.
func (d *diskMonitor) check() {
	var why []string
	free, err := statfsFree(d.dir)
	if err != nil {
		// Unknown is not full: the stores' own errors still count.
		d.free.Store(-1)
		d.n.log.Debug("statfs of the data dir failed", "dir", d.dir, "err", err)
	} else {
		d.free.Store(free)
		if free < d.min {
			why = append(why, fmt.Sprintf("%s has %d bytes free, below the reserve of %d (disk.min_free_bytes)", d.dir, free, d.min))
		}
	}
	if p := d.storeErr.Load(); p != nil {
		if len(why) == 0 && err == nil && probeWrite(d.dir) == nil {
			d.storeErr.CompareAndSwap(p, nil)
		} else {
			why = append(why, (*p).Error())
		}
	}
	if werr := d.n.fsm.WriteError(); werr != nil {
		why = append(why, werr.Error())
	}
	was := d.refusal.Load() != nil
	if len(why) == 0 {
		if was {
			d.refusal.Store(nil)
			d.warnedNoPeer.Store(false)
			d.publish(true)
			d.n.log.Info("data dir writable again; taking writes", "dir", d.dir, "free_bytes", free)
		}
		return
	}
	refusal := fmt.Errorf("%w: node %s cannot write to its data dir: %s; writes are refused until space returns",
		apierr.ErrDiskFull, d.n.cfg.NodeID, strings.Join(why, "; "))
	d.refusal.Store(&refusal)
	if !was {
		d.publish(false)
		d.n.log.Warn("data dir full; refusing writes (a leader hands leadership to a peer that can write)",
			"dir", d.dir, "free_bytes", free, "min_free_bytes", d.min, "why", strings.Join(why, "; "))
	}
	select { // a leader hands off (handOffLoop)
	case d.refused <- struct{}{}:
	default:
	}
}

// publish sets DiskHealthService (once gRPC serves).
func (d *diskMonitor) publish(writable bool) {
	if d.n.health == nil {
		return
	}
	st := healthpb.HealthCheckResponse_SERVING
	if !writable {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	d.n.health.SetServingStatus(DiskHealthService, st)
}

// gate is the proposer's Gate: every write a node proposes (client
// writes, leases, ticks, joins) is refused at once while it cannot write.
func (d *diskMonitor) gate(*fsmpb.Command) error {
	if p := d.refusal.Load(); p != nil {
		return *p
	}
	return nil
}

// full reports whether the node refuses writes for lack of space.
func (d *diskMonitor) full() bool { return d.refusal.Load() != nil }

// handOffLoop is the leader's disk hand-off duty (leadership.go): after
// each check that finds the data dir full it hands leadership to a voter
// that reports it can write. With no such voter (a cluster of one, or
// every peer full) the node stays leader and goes on refusing writes: a
// leader that cannot write still serves reads, and none would do better.
// A leader already full when its term starts hands off at once.
func (d *diskMonitor) handOffLoop(ctx context.Context) {
	n := d.n
	for {
		if d.full() && n.otherVoters() > 0 {
			d.handOff(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-d.refused:
		}
	}
}

// handOff makes one attempt (retried at the next check).
func (d *diskMonitor) handOff(ctx context.Context) {
	n := d.n
	id, addr, ok := d.writablePeer(ctx)
	if !ok {
		if ctx.Err() == nil && d.warnedNoPeer.CompareAndSwap(false, true) {
			n.log.Warn("data dir full, but no peer reports it can write; staying leader and refusing writes")
		}
		return
	}
	start := time.Now()
	if err := waitFuture(ctx, n.raft.LeadershipTransferToServer(id, addr)); err != nil {
		if ctx.Err() == nil {
			n.log.Warn("data dir full; leadership transfer failed (retried at the next check)", "to", id, "err", err)
		}
		return
	}
	n.log.Warn("data dir full; handed leadership over", "to", id, "took", time.Since(start))
}

// writablePeer picks a voter other than this node whose DiskHealthService
// is SERVING (asked over the forwarding connection, a second at most per
// peer). A peer that does not know the service (a node from before it) is
// taken when no peer says SERVING.
func (d *diskMonitor) writablePeer(ctx context.Context) (raft.ServerID, raft.ServerAddress, bool) {
	n := d.n
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return "", "", false
	}
	grpcAddr := map[string]string{}
	for _, m := range n.fsm.Nodes() {
		grpcAddr[m.NodeID] = m.GRPCAddr
	}
	var fallback *raft.Server
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage != raft.Voter || s.ID == raft.ServerID(n.cfg.NodeID) || grpcAddr[string(s.ID)] == "" {
			continue
		}
		c, err := n.fwd.conn(grpcAddr[string(s.ID)])
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := healthpb.NewHealthClient(c).Check(cctx, &healthpb.HealthCheckRequest{Service: DiskHealthService})
		cancel()
		switch {
		case err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
			return s.ID, s.Address, true
		case status.Code(err) == codes.NotFound && fallback == nil:
			s := s
			fallback = &s
		}
	}
	if fallback != nil {
		return fallback.ID, fallback.Address, true
	}
	return "", "", false
}

// storeFailed records a Raft store write error that means no space and
// asks for a check at once; it returns err naming the store.
func (d *diskMonitor) storeFailed(path string, err error) error {
	if err == nil || !isDiskFull(err) {
		return err
	}
	e := fmt.Errorf("raft store %s: %w", path, err)
	d.storeErr.Store(&e)
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return e
}

// storeWrote clears a recorded store error once a write succeeded.
func (d *diskMonitor) storeWrote() {
	if d.storeErr.Load() != nil {
		d.storeErr.Store(nil)
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// watchedStore is the Raft log and stable store (logstore.go) as Raft sees it:
// its write errors reach the disk monitor. It sits under the cache of
// recent entries (logcache.go), at the store itself, where ENOSPC is
// told apart before raft turns errors into strings.
type watchedStore struct {
	logStore
	d    *diskMonitor
	path string
}

func (d *diskMonitor) watchStore(s logStore, path string) *watchedStore {
	return &watchedStore{logStore: s, d: d, path: path}
}

func (w *watchedStore) wrote(err error) error {
	if err != nil {
		return w.d.storeFailed(w.path, err)
	}
	w.d.storeWrote()
	return nil
}

// appended is wrote for log appends. An append that failed for lack of
// space returns only after a pause: a follower answers the failure and
// the leader retries at once, so without it the two would spin on the
// same failing write (and log it) as fast as loopback allows.
func (w *watchedStore) appended(err error) error {
	err = w.wrote(err)
	if isDiskFull(err) {
		time.Sleep(min(w.d.interval, 100*time.Millisecond))
	}
	return err
}

// IsMonotonic implements raft.MonotonicLogStore for a store that is (the
// WAL): Raft then empties the log when it installs a snapshot, since such
// a store cannot append after a gap. Embedding the interface would hide it.
func (w *watchedStore) IsMonotonic() bool {
	m, ok := w.logStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// StoreLog implements raft.LogStore.
func (w *watchedStore) StoreLog(l *raft.Log) error { return w.appended(w.logStore.StoreLog(l)) }

// StoreLogs implements raft.LogStore. It reports the append's time and
// size under the same go-metrics keys whichever store is below
// (internal/metrics maps them to raftq_raft_log_store_*).
func (w *watchedStore) StoreLogs(l []*raft.Log) error {
	start := time.Now()
	err := w.logStore.StoreLogs(l)
	gometrics.MeasureSince([]string{"raftq", "logstore", "storeLogs"}, start)
	gometrics.AddSample([]string{"raftq", "logstore", "logsPerBatch"}, float32(len(l)))
	return w.appended(err)
}

// DeleteRange implements raft.LogStore.
func (w *watchedStore) DeleteRange(lo, hi uint64) error {
	return w.wrote(w.logStore.DeleteRange(lo, hi))
}

// Set implements raft.StableStore.
func (w *watchedStore) Set(k, v []byte) error { return w.wrote(w.logStore.Set(k, v)) }

// SetUint64 implements raft.StableStore.
func (w *watchedStore) SetUint64(k []byte, v uint64) error {
	return w.wrote(w.logStore.SetUint64(k, v))
}

// diskGatedProposer is the dispatcher's proposer while the disk may be
// full. A refused lease is answered at once (the Fetch gets the refusal),
// but a refused tick (promote, expire, purge) is answered one check
// interval later: the dispatcher proposes the next tick as soon as one
// completes, and an instant refusal would make it spin.
type diskGatedProposer struct {
	d *diskMonitor
	p dispatch.Proposer
}

// Submit implements dispatch.Proposer.
func (g diskGatedProposer) Submit(cmd *fsmpb.Command, done func(proposer.Response)) {
	switch cmd.GetType() {
	case fsmpb.CommandType_COMMAND_TYPE_PROMOTE, fsmpb.CommandType_COMMAND_TYPE_EXPIRE_LEASES, fsmpb.CommandType_COMMAND_TYPE_PURGE,
		fsmpb.CommandType_COMMAND_TYPE_EXPIRE_TIMEOUTS:
		if err := g.d.gate(cmd); err != nil {
			time.AfterFunc(g.d.interval, func() { done(proposer.Response{Err: err}) })
			return
		}
	}
	g.p.Submit(cmd, done)
}

// stats adds the disk figures to RaftStats (the admin API's cluster view).
func (d *diskMonitor) stats(m map[string]string) {
	m["disk_free_bytes"] = strconv.FormatInt(d.free.Load(), 10)
	m["disk_min_free_bytes"] = strconv.FormatInt(d.min, 10)
	m["disk_full"] = strconv.FormatBool(d.full())
	if p := d.refusal.Load(); p != nil {
		m["disk_full_reason"] = (*p).Error()
	}
}

// DiskFull reports whether the node refuses writes because it cannot
// write to its data dir, and why (the message writes are refused with).
func (n *Node) DiskFull() (bool, string) {
	if p := n.disk.refusal.Load(); p != nil {
		return true, (*p).Error()
	}
	return false, ""
}

var (
	descDiskFree = prometheus.NewDesc(metricsNamespace+"_disk_free_bytes",
		"Bytes free to this node on its data dir's filesystem (statfs f_bavail) at the last check; -1 when unknown.", nil, nil)
	descDiskMin = prometheus.NewDesc(metricsNamespace+"_disk_min_free_bytes",
		"The free-space reserve (disk.min_free_bytes): below it the node refuses writes.", nil, nil)
	descDiskFull = prometheus.NewDesc(metricsNamespace+"_disk_full",
		"1 while this node refuses writes because it cannot write to its data dir (free space below the reserve, or ENOSPC/EDQUOT from its Raft log or FSM store), else 0.", nil, nil)
)

// diskCollector reads the monitor's figures at scrape time.
type diskCollector struct{ d *diskMonitor }

func (c diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDiskFree
	ch <- descDiskMin
	ch <- descDiskFull
}

func (c diskCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descDiskFree, prometheus.GaugeValue, float64(c.d.free.Load()))
	ch <- prometheus.MustNewConstMetric(descDiskMin, prometheus.GaugeValue, float64(c.d.min))
	ch <- prometheus.MustNewConstMetric(descDiskFull, prometheus.GaugeValue, b2f(c.d.full()))
}
