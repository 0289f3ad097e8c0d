package liveconfig_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftq/raftq/internal/etcdtest"
	"github.com/raftq/raftq/internal/liveconfig"
	"github.com/raftq/raftq/internal/testutil"
)

func TestParseQueueConfig(t *testing.T) {
	good := map[string]liveconfig.QueueConfig{
		`{}`: {},
		`{"lease_duration":"45s","max_attempts":3,"initial_backoff":"1s","max_backoff":"1m","max_in_flight":2,"rate_per_sec":5,"burst":10}`: {
			LeaseDuration: liveconfig.Duration(45 * time.Second), MaxAttempts: 3, InitialBackoff: liveconfig.Duration(time.Second),
			MaxBackoff: liveconfig.Duration(time.Minute), MaxInFlight: 2, RatePerSec: 5, Burst: 10},
		`{"max_in_flight_per_key":3,"rate_per_key":0.5}`: {MaxInFlightPerKey: 3, RatePerKey: 0.5},
	}
	for in, want := range good {
		got, err := liveconfig.ParseQueueConfig([]byte(in))
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", in, got, err)
		}
	}
	bad := map[string]string{
		`{"lease_duration":30}`:                             "duration",
		`{"lease_duration":"soon"}`:                         "duration",
		`{"max_in_flight":-1}`:                              "max_in_flight",
		`{"max_in_flight_per_key":-1}`:                      "max_in_flight_per_key: must not be negative",
		`{"rate_per_key":-1}`:                               "rate_per_key",
		`{"max_inflight":1}`:                                "unknown field",
		`{"initial_backoff":"1m","max_backoff":"1s"}`:       "max_backoff",
		`{"burst":3}`:                                       "burst: needs rate_per_sec",
		`{"rate_per_sec":-2}`:                               "rate_per_sec",
		`{"max_attempts":-1}`:                               "max_attempts",
		`not json`:                                          "invalid",
		`{} {}`:                                             "trailing",
		`{"lease_duration":"-1s"}`:                          "lease_duration",
		`{"max_attempts":"3"}`:                              "cannot unmarshal",
		`{"rate_per_sec":1e9}`:                              "rate_per_sec",
		`{"max_backoff":"-1s"}`:                             "max_backoff",
		`{"initial_backoff":"-1s"}`:                         "initial_backoff",
		`{"max_in_flight":1,"lease_duration":"1x"}`:         "duration",
		`{"lease_duration":"1s","lease_duration2":"1s"}`:    "unknown field",
		`{"lease_duration":null,"max_attempts":1,"x":true}`: "unknown field",
	}
	for in, want := range bad {
		if _, err := liveconfig.ParseQueueConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want it to mention %q", in, err, want)
		}
	}
	if _, err := liveconfig.ParseLogLevel("loud"); err == nil {
		t.Error("log level loud accepted")
	}
	if l, err := liveconfig.ParseLogLevel("DEBUG"); err != nil || l != slog.LevelDebug {
		t.Errorf("DEBUG: %v %v", l, err)
	}
}

func TestMerge(t *testing.T) {
	def := liveconfig.QueueConfig{LeaseDuration: 5, MaxAttempts: 2, MaxInFlight: 9, RatePerSec: 1, Burst: 1, MaxInFlightPerKey: 4}
	q := liveconfig.QueueConfig{MaxAttempts: 7, RatePerSec: 3}
	got := q.Merge(def)
	want := liveconfig.QueueConfig{LeaseDuration: 5, MaxAttempts: 7, MaxInFlight: 9, RatePerSec: 3, MaxInFlightPerKey: 4}
	if got != want {
		t.Fatalf("merge: %+v, want %+v", got, want)
	}
}

// waitSnap waits until cond holds for the watcher's snapshot.
func waitSnap(t *testing.T, w *liveconfig.Watcher, what string, cond func(*liveconfig.Snapshot) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ch := w.Changed()
		if cond(w.Snapshot()) {
			return
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("live config never reached: %s (snapshot %+v)", what, w.Snapshot())
}

// Values are read at start and followed; a bad value is refused and logged
// while the old one stays; the node's own check applies; deletes remove;
// the log level callback fires.
func TestWatcher(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	p := s.Prefix("live")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(k, v string) {
		t.Helper()
		if _, err := c.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	put(liveconfig.QueueKey(p, "emails"), `{"max_in_flight":2}`)
	put(liveconfig.QueueKey(p, "bad name!"), `{"max_in_flight":2}`)

	var logs testutil.Buffer
	var mu sync.Mutex
	var levels []string
	w := liveconfig.Start(c, p, liveconfig.Options{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Check: func(q liveconfig.QueueConfig) error {
			if time.Duration(q.LeaseDuration) > time.Hour {
				return errors.New("lease_duration: above this node's limit of 1h")
			}
			return nil
		},
		OnLogLevel: func(l slog.Level, set bool) {
			mu.Lock()
			levels = append(levels, l.String()+map[bool]string{true: "", false: "(unset)"}[set])
			mu.Unlock()
		},
	})
	defer w.Close()
	waitSnap(t, w, "initial read", func(s *liveconfig.Snapshot) bool { return s.Queue("emails").MaxInFlight == 2 })
	if len(w.Snapshot().Queues) != 1 {
		t.Fatalf("invalid queue name accepted: %+v", w.Snapshot().Queues)
	}

	put(liveconfig.DefaultsKey(p), `{"lease_duration":"45s","max_in_flight":10}`)
	waitSnap(t, w, "defaults", func(s *liveconfig.Snapshot) bool {
		q := s.Queue("emails")
		return q.LeaseDuration == liveconfig.Duration(45*time.Second) && q.MaxInFlight == 2 && s.Queue("other").MaxInFlight == 10
	})

	// Refused: bad JSON, then a value above the node's own limit. The old
	// value stays, and each refusal is logged.
	put(liveconfig.QueueKey(p, "emails"), `{"max_in_flight":"two"}`)
	put(liveconfig.QueueKey(p, "emails"), `{"lease_duration":"2h"}`)
	put(liveconfig.QueueKey(p, "marker"), `{"max_in_flight":1}`)
	waitSnap(t, w, "marker after bad values", func(s *liveconfig.Snapshot) bool { return s.Queue("marker").MaxInFlight == 1 })
	if got := w.Queue("emails"); got.MaxInFlight != 2 || got.LeaseDuration != liveconfig.Duration(45*time.Second) {
		t.Fatalf("bad value replaced the good one: %+v", got)
	}
	for _, want := range []string{"live config value refused; keeping the previous one", `above this node's limit`, "cannot unmarshal"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "lease_duration: above"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, logs.String())
	}

	put(liveconfig.LogLevelKey(p), "debug")
	put(liveconfig.LogLevelKey(p), "loud")
	waitSnap(t, w, "log level", func(s *liveconfig.Snapshot) bool { return s.LogLevel == "debug" })
	c.Delete(ctx, liveconfig.LogLevelKey(p))
	c.Delete(ctx, liveconfig.QueueKey(p, "emails"))
	waitSnap(t, w, "deletes", func(s *liveconfig.Snapshot) bool {
		_, has := s.Queues["emails"]
		return s.LogLevel == "" && !has
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(levels, ",") != "DEBUG,INFO(unset)" {
		t.Fatalf("log level callbacks %v", levels)
	}
}

// While etcd is down the last settings stay; changes made after it comes
// back are picked up.
func TestWatcherSurvivesEtcdRestart(t *testing.T) {
	s := etcdtest.New(t)
	c := s.Client()
	p := s.Prefix("restart")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c.Put(ctx, liveconfig.QueueKey(p, "q"), `{"max_in_flight":3}`)
	w := liveconfig.Start(c, p, liveconfig.Options{Logger: slog.New(slog.NewTextHandler(&testutil.Buffer{}, nil))})
	defer w.Close()
	waitSnap(t, w, "initial", func(s *liveconfig.Snapshot) bool { return s.Queue("q").MaxInFlight == 3 })
	s.Stop()
	time.Sleep(time.Second)
	if w.Queue("q").MaxInFlight != 3 {
		t.Fatal("settings lost while etcd is down")
	}
	s.Start()
	if _, err := c.Put(ctx, liveconfig.QueueKey(p, "q"), `{"max_in_flight":4}`); err != nil {
		t.Fatal(err)
	}
	waitSnap(t, w, "after restart", func(s *liveconfig.Snapshot) bool { return s.Queue("q").MaxInFlight == 4 })
}
