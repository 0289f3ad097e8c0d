package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite" // registers "sqlite" for the lock holder
	"github.com/raftq/raftq/svcd/store"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// holdSQLiteLock takes the write lock of the test database from another
// connection, as a second process would, and keeps it for d. The channel
// gets the time the lock was released.
func holdSQLiteLock(t *testing.T, b svcdtest.Backend, d time.Duration) <-chan time.Time {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(b.DataDir, "svcd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	done := make(chan time.Time, 1)
	go func() {
		time.Sleep(d)
		released := time.Now()
		if _, err := conn.ExecContext(context.Background(), "COMMIT"); err != nil {
			t.Error(err)
		}
		conn.Close()
		done <- released
	}()
	return done
}

// TestSQLiteBusyRetried: another process holds the write lock longer than
// the busy timeout; the write is retried until the lock is free.
func TestSQLiteBusyRetried(t *testing.T) {
	b := svcdtest.SQLite(t)
	cfg := cfgFor(b)
	cfg.BusyTimeout = 20 * time.Millisecond
	cfg.Retry = store.RetryPolicy{MaxAttempts: 50, BaseDelay: 20 * time.Millisecond, MaxDelay: 50 * time.Millisecond}
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	released := holdSQLiteLock(t, b, 300*time.Millisecond)
	if _, err := s.StoreResult(context.Background(), res("busy", 1, store.StatusSucceeded)); err != nil {
		t.Fatalf("store under a held lock: %v", err)
	}
	finished := time.Now()
	if at := <-released; finished.Before(at) {
		t.Errorf("write finished %v before the lock was released", at.Sub(finished))
	}
}

// TestSQLiteBusyGivesUp: when retries run out the error says the database is
// unavailable (gRPC UNAVAILABLE), and nothing was written.
func TestSQLiteBusyGivesUp(t *testing.T) {
	b := svcdtest.SQLite(t)
	cfg := cfgFor(b)
	cfg.BusyTimeout = 10 * time.Millisecond
	cfg.Retry = store.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	released := holdSQLiteLock(t, b, 300*time.Millisecond)
	_, err = s.StoreResult(context.Background(), res("busy", 1, store.StatusSucceeded))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	<-released
	if st, err := s.Stats(context.Background()); err != nil || st.Results != 0 || st.Attempts != 0 {
		t.Fatalf("stats %+v, %v: want nothing written", st, err)
	}
}

// TestPostgresSessionsKilled: the server drops every session of the store
// (as a restart or failover would); the next writes succeed on new ones.
func TestPostgresSessionsKilled(t *testing.T) {
	b := svcdtest.Postgres(t)
	s := openStore(t, b)
	ctx := context.Background()
	if _, err := s.StoreResult(ctx, res("k", 1, store.StatusFailed)); err != nil {
		t.Fatal(err)
	}
	svcdtest.Exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, b.Schema)
	for tok := uint64(2); tok <= 5; tok++ {
		if _, err := s.StoreResult(ctx, res("k", tok, store.StatusFailed)); err != nil {
			t.Fatalf("write %d after sessions were killed: %v", tok, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNewerSchemaRefused: a database migrated by a newer svcd is not used.
func TestNewerSchemaRefused(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		openStore(t, b) // migrate to the current version first
		db := rawExec(t, b)
		db(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', CURRENT_TIMESTAMP)`)
		_, err := store.Open(context.Background(), cfgFor(b))
		if err == nil || !strings.Contains(err.Error(), "newer than this svcd knows") {
			t.Fatalf("open of a newer schema: err = %v", err)
		}
	})
}

// rawExec returns a function that runs a statement in the backend's test
// database, bypassing the store.
func rawExec(t *testing.T, b svcdtest.Backend) func(string) {
	return func(q string) {
		t.Helper()
		if b.Driver == "postgres" {
			svcdtest.Exec(t, "SET search_path TO "+b.Schema+"; "+q)
			return
		}
		db, err := sql.Open("sqlite", filepath.Join(b.DataDir, "svcd.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}
