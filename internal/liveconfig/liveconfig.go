// Package liveconfig is the cluster's live settings, kept in etcd under
// "<prefix>/config/" and applied by every broker without a restart: job
// defaults per queue (lease duration, max attempts, back-off), per-queue
// caps on leased jobs and lease rates (enforced by the leader's
// dispatcher), and the log level.
//
// A Watcher reads the keys once, then follows them with an etcd watch. Each
// value is validated before it is used; a bad one is refused and logged,
// and the key keeps its previous good value. While etcd is unreachable the
// last values stay in force: live config is never on the data path.
//
// Keys and values:
//
//	<prefix>/config/defaults        QueueConfig JSON, for every queue
//	<prefix>/config/queues/<queue>  QueueConfig JSON, for one queue (its
//	                                fields override the defaults' fields)
//	<prefix>/config/log_level       debug | info | warn | error
//
// A QueueConfig's durations are Go duration strings ("30s"); absent or zero
// fields mean "not set here".
package liveconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/raftq/raftq/internal/limits"
)

// Duration is a time.Duration written as a Go duration string in JSON.
type Duration time.Duration

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s"; a bare number is refused, since its unit
// would be a guess.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil // unset
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string like \"30s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

// QueueConfig is one queue's live settings. Zero fields are unset.
type QueueConfig struct {
	// Job defaults, stamped into jobs enqueued without their own.
	LeaseDuration  Duration `json:"lease_duration,omitempty"`
	MaxAttempts    int32    `json:"max_attempts,omitempty"`
	InitialBackoff Duration `json:"initial_backoff,omitempty"`
	MaxBackoff     Duration `json:"max_backoff,omitempty"`
	// MaxInFlight caps the queue's leased jobs across all workers.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// RatePerSec limits how many of the queue's jobs are leased per
	// second; Burst is the bucket (default: the rate, at least 1).
	RatePerSec float64 `json:"rate_per_sec,omitempty"`
	Burst      int     `json:"burst,omitempty"`
	// MaxInFlightPerKey caps the leased jobs of each concurrency key of
	// the queue, across all workers (0: no cap). Jobs without a key are
	// not capped by it.
	MaxInFlightPerKey int `json:"max_in_flight_per_key,omitempty"`
	// RatePerKey limits how many jobs of each concurrency key of the
	// queue are leased per second (0: unlimited; bucket: the rate, at
	// least 1).
	RatePerKey float64 `json:"rate_per_key,omitempty"`
}

// Merge returns c with every unset field taken from under.
func (c QueueConfig) Merge(under QueueConfig) QueueConfig {
	if c.LeaseDuration == 0 {
		c.LeaseDuration = under.LeaseDuration
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = under.MaxAttempts
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = under.InitialBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = under.MaxBackoff
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = under.MaxInFlight
	}
	if c.RatePerSec == 0 {
		c.RatePerSec, c.Burst = under.RatePerSec, under.Burst
	}
	if c.MaxInFlightPerKey == 0 {
		c.MaxInFlightPerKey = under.MaxInFlightPerKey
	}
	if c.RatePerKey == 0 {
		c.RatePerKey = under.RatePerKey
	}
	return c
}

// Validate reports the first thing wrong with c, naming the field.
func (c QueueConfig) Validate() error {
	switch {
	case c.LeaseDuration < 0:
		return errors.New("lease_duration: must not be negative")
	case c.MaxAttempts < 0:
		return errors.New("max_attempts: must not be negative")
	case c.InitialBackoff < 0:
		return errors.New("initial_backoff: must not be negative")
	case c.MaxBackoff < 0:
		return errors.New("max_backoff: must not be negative")
	case c.MaxBackoff != 0 && c.InitialBackoff > c.MaxBackoff:
		return errors.New("max_backoff: must be at least initial_backoff")
	case c.MaxInFlight < 0:
		return errors.New("max_in_flight: must not be negative")
	case c.MaxInFlightPerKey < 0:
		return errors.New("max_in_flight_per_key: must not be negative (0 means no cap)")
	case c.RatePerKey < 0 || c.RatePerKey > 1e6:
		return errors.New("rate_per_key: must be between 0 and 1000000")
	case c.RatePerSec < 0 || c.RatePerSec > 1e6:
		return errors.New("rate_per_sec: must be between 0 and 1000000")
	case c.Burst < 0:
		return errors.New("burst: must not be negative")
	case c.Burst > 0 && c.RatePerSec == 0:
		return errors.New("burst: needs rate_per_sec")
	}
	return nil
}

// ParseQueueConfig decodes and validates a stored QueueConfig; unknown
// fields are errors (a misspelt cap must not silently do nothing).
func ParseQueueConfig(b []byte) (QueueConfig, error) {
	var c QueueConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, err
	}
	if dec.More() {
		return c, errors.New("trailing data after the JSON object")
	}
	return c, c.Validate()
}

// ParseLogLevel reads a stored log level.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.TrimSpace(strings.ToLower(s)) {
	case "debug", "info", "warn", "error":
		return l, l.UnmarshalText([]byte(strings.TrimSpace(s)))
	}
	return l, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}

// CheckQueueName reports whether name is a valid queue name.
func CheckQueueName(name string) error {
	if !limits.ValidName(name) { // the API's rule for queue names
		return fmt.Errorf("queue name %q must match %s", name, limits.NameRE)
	}
	return nil
}

// Root is the prefix of every live config key of a cluster.
func Root(prefix string) string { return prefix + "/config/" }

// DefaultsKey holds the QueueConfig that applies to every queue.
func DefaultsKey(prefix string) string { return prefix + "/config/defaults" }

// QueueKey holds queue q's own QueueConfig.
func QueueKey(prefix, q string) string { return prefix + "/config/queues/" + q }

// LogLevelKey holds the cluster-wide log level.
func LogLevelKey(prefix string) string { return prefix + "/config/log_level" }

func queuesPrefix(prefix string) string { return prefix + "/config/queues/" }

// Snapshot is one consistent view of the live settings. It is immutable.
type Snapshot struct {
	Defaults QueueConfig
	Queues   map[string]QueueConfig
	// LogLevel is "" when unset.
	LogLevel string
	// Revision is the etcd revision this view includes.
	Revision int64
}

// Queue returns queue's settings: its own fields over the defaults'.
func (s *Snapshot) Queue(name string) QueueConfig {
	return s.Queues[name].Merge(s.Defaults)
}

// Options tune a Watcher.
type Options struct {
	// Check, when set, adds the node's own limits to validation (lease
	// duration and attempts within what the API accepts).
	Check func(QueueConfig) error
	// OnLogLevel is called when the live log level changes: set is false
	// when it was removed (the node goes back to its own level).
	OnLogLevel func(l slog.Level, set bool)
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Watcher follows the live settings of one cluster prefix.
type Watcher struct {
	cli    *clientv3.Client
	prefix string
	opts   Options
	log    *slog.Logger

	snap atomic.Pointer[Snapshot]

	mu      sync.Mutex
	changed chan struct{}
	raw     map[string]string // key → last good raw value
	bad     map[string]string // key → last refused raw value

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// Start begins following prefix's live settings. It returns at once; until
// etcd answers, Snapshot is empty (every queue on the node's defaults, no
// caps).
func Start(cli *clientv3.Client, prefix string, opts Options) *Watcher {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		cli: cli, prefix: prefix, opts: opts, log: opts.Logger.With("component", "liveconfig"),
		changed: make(chan struct{}), raw: map[string]string{},
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	w.snap.Store(&Snapshot{Queues: map[string]QueueConfig{}})
	go w.run()
	return w
}

// Snapshot returns the current settings (never nil).
func (w *Watcher) Snapshot() *Snapshot { return w.snap.Load() }

// Queue returns queue's current settings.
func (w *Watcher) Queue(name string) QueueConfig { return w.Snapshot().Queue(name) }

// Changed returns a channel closed at the next change of the settings.
func (w *Watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Close stops following.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

func (w *Watcher) run() {
	defer close(w.done)
	backoff := 100 * time.Millisecond
	for w.ctx.Err() == nil {
		err := w.follow()
		if w.ctx.Err() != nil {
			return
		}
		w.log.Debug("live config watch ended; re-reading", "err", err)
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
	}
}

// follow reads everything, then applies watch events until the watch
// fails; the caller starts over (a full read) after that.
func (w *Watcher) follow() error {
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
	g, err := w.cli.Get(gctx, Root(w.prefix), clientv3.WithPrefix())
	gcancel()
	if err != nil {
		return err
	}
	all := map[string]string{}
	for _, kv := range g.Kvs {
		all[string(kv.Key)] = string(kv.Value)
	}
	w.replace(all, g.Header.Revision)
	wch := w.cli.Watch(clientv3.WithRequireLeader(ctx), Root(w.prefix), clientv3.WithPrefix(), clientv3.WithRev(g.Header.Revision+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return err
		}
		if wr.IsProgressNotify() {
			continue
		}
		w.mu.Lock()
		next := map[string]string{}
		for k, v := range w.raw {
			next[k] = v
		}
		w.mu.Unlock()
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			if ev.Type == clientv3.EventTypeDelete {
				delete(next, k)
				w.log.Info("live config removed", "key", k)
			} else {
				next[k] = string(ev.Kv.Value)
			}
		}
		w.replace(next, wr.Header.Revision)
	}
	return errors.New("watch closed")
}

// replace validates every value in all and publishes a new snapshot. A
// value that fails validation is logged and replaced by the key's last
// good value (or left out if it never had one).
func (w *Watcher) replace(all map[string]string, rev int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	snap := &Snapshot{Queues: map[string]QueueConfig{}, Revision: rev}
	good, bad := map[string]string{}, map[string]string{}
	var level slog.Level
	for k, v := range all {
		err := w.apply(snap, k, v, &level)
		if err == nil {
			good[k] = v
			if old, had := w.raw[k]; !had || old != v {
				w.log.Info("live config applied", "key", k, "value", v)
			}
			continue
		}
		bad[k] = v
		report := w.bad[k] != v // log each refused value once
		if old, had := w.raw[k]; had {
			if report {
				w.log.Error("live config value refused; keeping the previous one", "key", k, "value", v, "err", err, "kept", old)
			}
			if w.apply(snap, k, old, &level) == nil {
				good[k] = old
			}
		} else if report {
			w.log.Error("live config value refused", "key", k, "value", v, "err", err)
		}
	}
	w.raw, w.bad = good, bad
	old := w.snap.Load()
	w.snap.Store(snap)
	if old.LogLevel != snap.LogLevel && w.opts.OnLogLevel != nil {
		w.opts.OnLogLevel(level, snap.LogLevel != "")
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// apply puts one key's value into snap, or says why it cannot.
func (w *Watcher) apply(snap *Snapshot, key, val string, level *slog.Level) error {
	switch {
	case key == DefaultsKey(w.prefix):
		c, err := w.parse(val)
		if err != nil {
			return err
		}
		snap.Defaults = c
	case strings.HasPrefix(key, queuesPrefix(w.prefix)):
		q := strings.TrimPrefix(key, queuesPrefix(w.prefix))
		if err := CheckQueueName(q); err != nil {
			return err
		}
		c, err := w.parse(val)
		if err != nil {
			return err
		}
		snap.Queues[q] = c
	case key == LogLevelKey(w.prefix):
		l, err := ParseLogLevel(val)
		if err != nil {
			return err
		}
		snap.LogLevel = strings.ToLower(strings.TrimSpace(val))
		*level = l
	default:
		return errors.New("unknown live config key")
	}
	return nil
}

func (w *Watcher) parse(val string) (QueueConfig, error) {
	c, err := ParseQueueConfig([]byte(val))
	if err != nil {
		return c, err
	}
	if w.opts.Check != nil {
		if err := w.opts.Check(c); err != nil {
			return c, err
		}
	}
	return c, nil
}
