// Package store is svcd's system of record: GORM over SQLite (the default,
// pure Go, nothing to install) or PostgreSQL, an explicit schema applied by
// versioned migrations at Open, and the fencing rules for results applied in
// one transaction per write. See DESIGN.md in svcd/.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

const (
	dialectSQLite   = "sqlite"
	dialectPostgres = "postgres"
)

// Config says which database to use and how to treat it. The zero value
// (plus DataDir or DSN) is a working SQLite setup.
type Config struct {
	// Driver is "sqlite" (default) or "postgres".
	Driver string
	// DSN is the PostgreSQL connection string (key=value or URL form). For
	// SQLite it is an optional database file path that overrides DataDir.
	DSN string
	// DataDir holds the SQLite database file svcd.db; created if missing.
	DataDir string

	// Pool settings. Defaults: PostgreSQL 16 open / 16 idle; SQLite one
	// writer connection (writes are serialized in-process, which avoids
	// SQLITE_BUSY between our own connections) and 4 readers.
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration // default 30m
	ConnMaxIdleTime time.Duration // default 5m

	// BusyTimeout is how long SQLite waits for another process's lock
	// before reporting SQLITE_BUSY (then the store retries). Default 5s.
	BusyTimeout time.Duration
	// Synchronous is SQLite's synchronous pragma: FULL (default) fsyncs the
	// WAL on every commit, because a stored result lets the worker ack and
	// the broker then forgets the job: losing it later loses it for good.
	Synchronous string

	// Retry bounds the retries of transient database errors.
	Retry RetryPolicy

	// Logger receives slow-query and database error lines; nil discards.
	Logger logger.Interface
	// Now stamps created_at, updated_at and recorded_at; default time.Now.
	Now func() time.Time
}

// Store keeps results in a database. It is safe for concurrent use.
type Store struct {
	dialect string
	// w serves writes and r reads. On SQLite they are separate pools (one
	// writer connection, several readers thanks to WAL); on PostgreSQL they
	// are the same pool.
	w, r  *gorm.DB
	retry RetryPolicy
	now   func() time.Time
}

// Open connects, applies the migrations and returns a ready store. Transient
// errors while connecting are retried within cfg.Retry, so a database that
// is still starting does not fail svcd at once.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s := &Store{retry: cfg.Retry.withDefaults(), now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	lg := cfg.Logger
	if lg == nil {
		lg = logger.Discard
	}
	gcfg := func() *gorm.Config {
		return &gorm.Config{
			Logger:                 lg,
			SkipDefaultTransaction: true, // each write is one explicit transaction
			NowFunc:                func() time.Time { return normTime(s.now()) },
			PrepareStmt:            true,
		}
	}
	if cfg.ConnMaxLifetime == 0 {
		cfg.ConnMaxLifetime = 30 * time.Minute
	}
	if cfg.ConnMaxIdleTime == 0 {
		cfg.ConnMaxIdleTime = 5 * time.Minute
	}

	var err error
	switch cfg.Driver {
	case "", dialectSQLite:
		s.dialect = dialectSQLite
		dsn, derr := sqliteDSN(cfg)
		if derr != nil {
			return nil, derr
		}
		if s.w, err = openSQLite(ctx, dsn, gcfg, cfg.BusyTimeout); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		if s.r, err = openSQLite(ctx, dsn, gcfg, cfg.BusyTimeout); err != nil {
			s.closePools()
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		readers := cfg.MaxOpenConns
		if readers <= 0 {
			readers = 4
		}
		if err = s.setPool(s.w, 1, 1, cfg); err == nil {
			err = s.setPool(s.r, readers, readers, cfg)
		}
	case dialectPostgres:
		s.dialect = dialectPostgres
		if cfg.DSN == "" {
			return nil, errors.New("postgres needs a DSN")
		}
		// The pgx stdlib driver caches prepared statements per connection
		// itself, so GORM's statement cache is not needed here.
		c := gcfg()
		c.PrepareStmt = false
		if s.w, err = gorm.Open(postgres.New(postgres.Config{DSN: cfg.DSN}), c); err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		s.r = s.w
		open, idle := cfg.MaxOpenConns, cfg.MaxIdleConns
		if open <= 0 {
			open = 16
		}
		if idle <= 0 {
			idle = open
		}
		err = s.setPool(s.w, open, idle, cfg)
	default:
		return nil, fmt.Errorf("unknown database driver %q (want sqlite or postgres)", cfg.Driver)
	}
	if err != nil {
		s.closePools()
		return nil, err
	}

	if err := s.do(ctx, func() error { return s.Ping(ctx) }); err != nil {
		s.closePools()
		return nil, fmt.Errorf("connect to %s: %w", s.dialect, err)
	}
	if err := s.do(ctx, func() error { return migrate(ctx, s.w, s.dialect) }); err != nil {
		s.closePools()
		return nil, err
	}
	return s, nil
}

// privateDB makes the SQLite database readable by svcd's user only: the
// file is created 0600 before SQLite opens it (SQLite gives the -wal and
// -shm files the database file's permissions), and an existing database,
// WAL and shared-memory file made by an older svcd are tightened to 0600.
// Results hold job outputs: not for other local users.
func privateDB(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite database: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sqlite database: %w", err)
		}
	}
	return nil
}

// sqliteDSN builds the SQLite connection string: WAL (readers do not block
// the writer), a busy timeout (another process holding the lock is waited
// for), foreign keys on, and BEGIN IMMEDIATE for transactions so a write
// transaction takes the write lock up front instead of failing to upgrade a
// read lock half-way (which no busy timeout can fix).
func sqliteDSN(cfg Config) (string, error) {
	path := cfg.DSN
	if path == "" {
		dir := cfg.DataDir
		if dir == "" {
			dir = "."
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("create data dir: %w", err)
		}
		path = filepath.Join(dir, "svcd.db")
	}
	if strings.Contains(path, "?") {
		return "", fmt.Errorf("sqlite path %q: give a plain file path, svcd sets the pragmas", path)
	}
	if path != ":memory:" && !strings.HasPrefix(path, "file:") {
		if err := privateDB(path); err != nil {
			return "", err
		}
	}
	busy := cfg.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	sync := strings.ToUpper(cfg.Synchronous)
	switch sync {
	case "":
		sync = "FULL"
	case "OFF", "NORMAL", "FULL", "EXTRA":
	default:
		return "", fmt.Errorf("sqlite synchronous %q: want OFF, NORMAL, FULL or EXTRA", cfg.Synchronous)
	}
	return fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(%s)&_pragma=foreign_keys(1)&_txlock=immediate",
		path, busy.Milliseconds(), sync), nil
}

// openSQLite opens the database, retrying while it is locked. Switching
// a fresh file to WAL (the DSN's journal_mode pragma) needs an exclusive
// lock, and SQLite answers SQLITE_BUSY at once there instead of calling the
// busy handler, so several processes starting together on a new database
// (TestMigrationsIdempotent) could fail to open it. The retry is bounded by
// the busy timeout, like every other wait for the lock.
func openSQLite(ctx context.Context, dsn string, gcfg func() *gorm.Config, busy time.Duration) (*gorm.DB, error) {
	if busy <= 0 {
		busy = 5 * time.Second
	}
	deadline := time.Now().Add(busy)
	wait := 5 * time.Millisecond
	for {
		db, err := gorm.Open(sqlite.Open(dsn), gcfg())
		if err == nil || !isSQLiteBusy(err) || time.Now().After(deadline) {
			return db, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

// isSQLiteBusy reports whether err is SQLite's "database is locked".
func isSQLiteBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked")
}

func (s *Store) setPool(db *gorm.DB, open, idle int, cfg Config) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	sqlDB.SetMaxOpenConns(open)
	sqlDB.SetMaxIdleConns(idle)
	sqlDB.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	sqlDB.SetConnMaxIdleTime(cfg.ConnMaxIdleTime)
	return nil
}

func (s *Store) closePools() error {
	var errs []error
	for i, db := range []*gorm.DB{s.w, s.r} {
		if db == nil || (i == 1 && s.r == s.w) {
			continue
		}
		if sqlDB, err := db.DB(); err == nil {
			errs = append(errs, sqlDB.Close())
		}
	}
	return errors.Join(errs...)
}

// Close closes the database pools. Calls in flight fail.
func (s *Store) Close() error { return s.closePools() }

// Dialect names the backend, "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

// Ping checks that the database answers, for readiness probes. On SQLite it
// checks both pools, since a write needs the writer connection.
func (s *Store) Ping(ctx context.Context) error {
	for i, db := range []*gorm.DB{s.r, s.w} {
		if i == 1 && s.w == s.r {
			break
		}
		var one int
		if err := db.WithContext(ctx).Raw("SELECT 1").Scan(&one).Error; err != nil {
			return err
		}
	}
	return nil
}

// StoreResult records one write under the fencing rules (see Decide) in a
// single transaction, appending the attempt to the job's history. A stale
// write is recorded in the history and then refused with an error wrapping
// ErrStaleToken. in must be valid (the service validates); the store relies
// on the schema's constraints only as a last guard.
//
// Concurrent writers are safe: on PostgreSQL the transaction inserts with ON
// CONFLICT DO NOTHING (which waits for a concurrent insert of the same job)
// and otherwise locks the row with SELECT ... FOR UPDATE before deciding; on
// SQLite every write transaction holds the database write lock (BEGIN
// IMMEDIATE, and one writer connection in-process). Transient errors retry
// the whole transaction, which is safe because a replay of a committed write
// is a duplicate.
func (s *Store) StoreResult(ctx context.Context, in Result) (StoreReply, error) {
	if in.LeaseToken == 0 || in.LeaseToken > math.MaxInt64 {
		return StoreReply{}, fmt.Errorf("lease token %d out of range", in.LeaseToken)
	}
	var reply StoreReply
	err := s.do(ctx, func() error {
		return s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var err error
			reply, err = s.storeTx(tx, in)
			return err
		})
	})
	if err != nil {
		return StoreReply{}, err
	}
	if reply.Outcome == OutcomeStale {
		return reply, fmt.Errorf("%w: job %s: token %d is older than the stored result's token %d",
			ErrStaleToken, in.JobID, in.LeaseToken, reply.Result.LeaseToken)
	}
	return reply, nil
}

func (s *Store) storeTx(tx *gorm.DB, in Result) (StoreReply, error) {
	now := normTime(s.now())
	row := toResultRow(in)
	row.CreatedAt, row.UpdatedAt = now, now

	// 1. Try to be the first result. ON CONFLICT DO NOTHING never fails on
	// the unique key: it waits for a concurrent inserter and then does
	// nothing, so no writer ever sees a unique violation.
	res := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "job_id"}}, DoNothing: true}).Create(&row)
	if res.Error != nil {
		return StoreReply{}, res.Error
	}
	var reply StoreReply
	if res.RowsAffected == 1 {
		reply = StoreReply{Outcome: OutcomeStored, Result: fromResultRow(row, false)}
	} else {
		// 2. A result exists: lock it and apply the rules.
		var cur resultRow
		q := tx.Select(resultColumnsNoOutput)
		if s.dialect == dialectPostgres {
			q = q.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		if err := q.Where("job_id = ?", in.JobID).Take(&cur).Error; err != nil {
			return StoreReply{}, err
		}
		reply.Outcome = Decide(uint64(cur.LeaseToken), Status(cur.Status), in.LeaseToken)
		reply.Result = fromResultRow(cur, false)
		if reply.Outcome == OutcomeStored {
			row.CreatedAt = cur.CreatedAt
			upd := tx.Model(&resultRow{}).
				Where("job_id = ? AND lease_token = ?", in.JobID, cur.LeaseToken).
				Updates(map[string]any{
					"queue":       row.Queue,
					"type":        row.Type,
					"lease_token": row.LeaseToken,
					"worker_id":   row.WorkerID,
					"attempt":     row.Attempt,
					"status":      row.Status,
					"output":      row.Output,
					"error":       row.Error,
					"started_at":  row.StartedAt,
					"finished_at": row.FinishedAt,
					"updated_at":  row.UpdatedAt,
				})
			if upd.Error != nil {
				return StoreReply{}, upd.Error
			}
			if upd.RowsAffected != 1 {
				// Cannot happen under the row or database lock; refuse
				// rather than guess.
				return StoreReply{}, fmt.Errorf("job %s: result changed under the lock", in.JobID)
			}
			reply.Result = fromResultRow(row, false)
		}
	}

	// 3. History: the first write of each lease token.
	att := attemptRow{
		JobID:      in.JobID,
		LeaseToken: int64(in.LeaseToken),
		WorkerID:   in.WorkerID,
		Attempt:    in.Attempt,
		Status:     string(in.Status),
		Error:      in.Error,
		StartedAt:  row.StartedAt,
		FinishedAt: row.FinishedAt,
		RecordedAt: now,
		Outcome:    string(reply.Outcome),
	}
	if err := tx.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "job_id"}, {Name: "lease_token"}},
		DoNothing: true,
	}).Create(&att).Error; err != nil {
		return StoreReply{}, err
	}
	return reply, nil
}

// GetResult reads a job's result with its output, or ErrNotFound.
func (s *Store) GetResult(ctx context.Context, jobID string) (Result, error) {
	var row resultRow
	err := s.do(ctx, func() error {
		return s.r.WithContext(ctx).Where("job_id = ?", jobID).Take(&row).Error
	})
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Result{}, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
	}
	if err != nil {
		return Result{}, err
	}
	return fromResultRow(row, true), nil
}

// ListResults returns up to f.Limit results matching f in (finished_at,
// job_id) order, and whether more follow.
func (s *Store) ListResults(ctx context.Context, f Filter) ([]Result, bool, error) {
	if f.Limit <= 0 {
		return nil, false, errors.New("list limit must be positive")
	}
	var rows []resultRow
	err := s.do(ctx, func() error {
		rows = rows[:0]
		q := s.r.WithContext(ctx).Model(&resultRow{})
		if !f.IncludeOutput {
			q = q.Select(resultColumnsNoOutput)
		}
		if f.Queue != "" {
			q = q.Where("queue = ?", f.Queue)
		}
		if f.Type != "" {
			q = q.Where("type = ?", f.Type)
		}
		if f.Status != "" {
			q = q.Where("status = ?", string(f.Status))
		}
		if !f.FinishedAfter.IsZero() {
			q = q.Where("finished_at >= ?", normTime(f.FinishedAfter))
		}
		if !f.FinishedBefore.IsZero() {
			q = q.Where("finished_at < ?", normTime(f.FinishedBefore))
		}
		if f.After != nil {
			q = q.Where("(finished_at, job_id) > (?, ?)", normTime(f.After.FinishedAt), f.After.JobID)
		}
		return q.Order("finished_at, job_id").Limit(f.Limit + 1).Find(&rows).Error
	})
	if err != nil {
		return nil, false, err
	}
	more := len(rows) > f.Limit
	if more {
		rows = rows[:f.Limit]
	}
	out := make([]Result, len(rows))
	for i, r := range rows {
		out[i] = fromResultRow(r, f.IncludeOutput)
	}
	return out, more, nil
}

// Attempts returns a job's history in lease-token order, or ErrNotFound when
// nothing was ever stored for the job.
func (s *Store) Attempts(ctx context.Context, jobID string) ([]Attempt, error) {
	var rows []attemptRow
	err := s.do(ctx, func() error {
		rows = rows[:0]
		return s.r.WithContext(ctx).Where("job_id = ?", jobID).Order("lease_token").Find(&rows).Error
	})
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: job %s", ErrNotFound, jobID)
	}
	out := make([]Attempt, len(rows))
	for i, r := range rows {
		out[i] = Attempt{
			JobID:      r.JobID,
			LeaseToken: uint64(r.LeaseToken),
			WorkerID:   r.WorkerID,
			Attempt:    r.Attempt,
			Status:     Status(r.Status),
			Error:      r.Error,
			StartedAt:  fromNullTime(r.StartedAt),
			FinishedAt: r.FinishedAt.UTC(),
			RecordedAt: r.RecordedAt.UTC(),
			Outcome:    Outcome(r.Outcome),
		}
	}
	return out, nil
}

// Stats counts the rows of both tables (for tests and operators).
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.do(ctx, func() error {
		if err := s.r.WithContext(ctx).Model(&resultRow{}).Count(&st.Results).Error; err != nil {
			return err
		}
		return s.r.WithContext(ctx).Model(&attemptRow{}).Count(&st.Attempts).Error
	})
	return st, err
}

func toResultRow(in Result) resultRow {
	return resultRow{
		JobID:      in.JobID,
		Queue:      in.Queue,
		Type:       in.Type,
		LeaseToken: int64(in.LeaseToken),
		WorkerID:   in.WorkerID,
		Attempt:    in.Attempt,
		Status:     string(in.Status),
		Output:     in.Output,
		Error:      in.Error,
		StartedAt:  toNullTime(in.StartedAt),
		FinishedAt: normTime(in.FinishedAt),
	}
}

func fromResultRow(r resultRow, withOutput bool) Result {
	out := Result{
		JobID:      r.JobID,
		Queue:      r.Queue,
		Type:       r.Type,
		LeaseToken: uint64(r.LeaseToken),
		WorkerID:   r.WorkerID,
		Attempt:    r.Attempt,
		Status:     Status(r.Status),
		Error:      r.Error,
		StartedAt:  fromNullTime(r.StartedAt),
		FinishedAt: r.FinishedAt.UTC(),
		CreatedAt:  r.CreatedAt.UTC(),
		UpdatedAt:  r.UpdatedAt.UTC(),
	}
	if withOutput {
		out.Output = r.Output
	}
	return out
}

// JobQueue returns the queue of the job's stored result (ok false when
// none is stored), reading nothing else: svcd's authorization checks a
// call that names a job against the job's queue.
func (s *Store) JobQueue(ctx context.Context, jobID string) (queue string, ok bool, err error) {
	var rows []string
	err = s.do(ctx, func() error {
		rows = rows[:0]
		return s.r.WithContext(ctx).Model(&resultRow{}).Where("job_id = ?", jobID).Limit(1).Pluck("queue", &rows).Error
	})
	if err != nil || len(rows) == 0 {
		return "", false, err
	}
	return rows[0], true, nil
}
