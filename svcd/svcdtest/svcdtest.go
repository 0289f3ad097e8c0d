// Package svcdtest gives svcd's tests (and tests of its clients) a fresh,
// isolated database on each backend, so one suite runs against SQLite and
// against a real PostgreSQL server. For tests only.
//
// PostgreSQL comes from env RAFTQ_TEST_POSTGRES_DSN (default
// DefaultPostgresDSN). When it is unreachable the PostgreSQL variants are
// skipped with the reason printed, except under CI (env CI=true), where they
// fail: CI must not go green without having run them (.ci/run starts a server
// with scripts/pg-start.sh).
package svcdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/server"
)

// DefaultPostgresDSN is the server scripts/pg-start.sh sets up.
const DefaultPostgresDSN = "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=raftq_test sslmode=disable"

// Backend is one database to run a test against. Driver, DSN and DataDir map
// one to one onto svcd's store.Config (this package does not import the
// store, so the store's own tests can use it).
type Backend struct {
	// Name is "sqlite" or "postgres", used as the subtest name.
	Name    string
	Driver  string
	DSN     string
	DataDir string
	// Schema is the PostgreSQL schema of the test; its connections carry it
	// as application_name too, so a test can find (and kill) exactly its
	// own server sessions.
	Schema string
}

// Each runs fn once per backend as subtests named after the backends.
func Each(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, Postgres(t)) })
}

// SQLite returns a backend on a new database file in a temporary directory
// removed after the test.
func SQLite(t testing.TB) Backend {
	t.Helper()
	return Backend{Name: "sqlite", Driver: "sqlite", DataDir: t.TempDir()}
}

// PostgresDSN is the DSN the tests use.
func PostgresDSN() string {
	if dsn := os.Getenv("RAFTQ_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return DefaultPostgresDSN
}

var (
	reachOnce sync.Once
	reachErr  error
)

// Postgres returns a backend on a fresh schema of the test server, selected
// through search_path and dropped after the test, so tests are isolated from
// each other and from earlier runs. It skips the test (or fails it under CI)
// when no server is reachable.
func Postgres(t testing.TB) Backend {
	t.Helper()
	dsn := PostgresDSN()
	reachOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			reachErr = err
			return
		}
		reachErr = conn.Ping(ctx)
		conn.Close(ctx)
	})
	if reachErr != nil {
		msg := fmt.Sprintf("PostgreSQL unreachable at %q: %v (start one with scripts/pg-start.sh or set RAFTQ_TEST_POSTGRES_DSN)",
			redact(dsn), reachErr)
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true requires PostgreSQL: " + msg)
		}
		t.Skip("skipping PostgreSQL: " + msg)
	}

	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "svcd_test_" + hex.EncodeToString(b[:])
	admin := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := admin("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		if err := admin("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return Backend{Name: "postgres", Driver: "postgres", DSN: withParams(dsn, schema), Schema: schema}
}

// withParams adds search_path and application_name to a key=value or URL
// DSN; pgx passes them to the server as run-time parameters of every
// connection.
func withParams(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			q.Set("application_name", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema + " application_name=" + schema
}

// Exec runs one statement on the PostgreSQL test server outside any test
// schema (e.g. to kill a test's sessions).
func Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// redact hides the password in a DSN for messages.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
			return u.String()
		}
	}
	fields := strings.Fields(dsn)
	for i, f := range fields {
		if strings.HasPrefix(f, "password=") {
			fields[i] = "password=xxx"
		}
	}
	return strings.Join(fields, " ")
}

// Start runs a svcd on backend b on loopback ports, without broker
// verification (the test stores results for jobs it made itself), shut
// down at cleanup.
func Start(t testing.TB, b Backend) *server.Server {
	t.Helper()
	return StartWith(t, server.Config{DB: b.Driver, DSN: b.DSN, DataDir: b.DataDir, Brokers: server.BrokerCheck{Disabled: true}})
}

// StartWith runs a svcd configured by cfg (listening on free loopback
// ports unless cfg names its own, with the server's other defaults), shut
// down at cleanup: for tests that verify results with a real cluster
// (cfg.Brokers) or serve TLS and auth.
func StartWith(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.ListenGRPC == "" {
		cfg.ListenGRPC = "127.0.0.1:0"
	}
	if cfg.ListenHTTP == "" {
		cfg.ListenHTTP = "127.0.0.1:0"
	}
	s, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// Dial is a results client of s (plain gRPC), closed at cleanup.
func Dial(t testing.TB, s *server.Server) *results.Client {
	t.Helper()
	rc, err := results.Dial(s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}
