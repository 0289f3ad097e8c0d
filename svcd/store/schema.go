package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// The GORM models map the tables created by the migrations below; the
// migrations, not AutoMigrate, own the schema so that every change is a
// reviewed, versioned step that runs the same on every node.

// resultRow is one row of results: the single result kept per job.
type resultRow struct {
	JobID      string       `gorm:"column:job_id;primaryKey"`
	Queue      string       `gorm:"column:queue"`
	Type       string       `gorm:"column:type"`
	LeaseToken int64        `gorm:"column:lease_token"`
	WorkerID   string       `gorm:"column:worker_id"`
	Attempt    int32        `gorm:"column:attempt"`
	Status     string       `gorm:"column:status"`
	Output     []byte       `gorm:"column:output"`
	Error      string       `gorm:"column:error"`
	StartedAt  sql.NullTime `gorm:"column:started_at"`
	FinishedAt time.Time    `gorm:"column:finished_at"`
	CreatedAt  time.Time    `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt  time.Time    `gorm:"column:updated_at;autoUpdateTime:false"`
}

// TableName pins the table name instead of GORM's pluralized guess.
func (resultRow) TableName() string { return "results" }

// attemptRow is one row of result_attempts: a job's history, one row per
// distinct lease token that wrote.
type attemptRow struct {
	JobID      string       `gorm:"column:job_id;primaryKey"`
	LeaseToken int64        `gorm:"column:lease_token;primaryKey;autoIncrement:false"`
	WorkerID   string       `gorm:"column:worker_id"`
	Attempt    int32        `gorm:"column:attempt"`
	Status     string       `gorm:"column:status"`
	Error      string       `gorm:"column:error"`
	StartedAt  sql.NullTime `gorm:"column:started_at"`
	FinishedAt time.Time    `gorm:"column:finished_at"`
	RecordedAt time.Time    `gorm:"column:recorded_at"`
	Outcome    string       `gorm:"column:outcome"`
}

// TableName pins the table name instead of GORM's pluralized guess.
func (attemptRow) TableName() string { return "result_attempts" }

// resultColumnsNoOutput is the column list for reads that leave outputs out.
var resultColumnsNoOutput = []string{
	"job_id", "queue", "type", "lease_token", "worker_id", "attempt", "status",
	"error", "started_at", "finished_at", "created_at", "updated_at",
}

// migration is one versioned schema step. Versions only grow and a released
// migration is never edited: add a new one instead.
type migration struct {
	version int
	name    string
	// sql holds the statements per dialect ("sqlite", "postgres").
	sql map[string][]string
}

// migrations is the schema history. Statements use IF NOT EXISTS as a second
// guard; the first is the schema_migrations row written in the same
// transaction.
var migrations = []migration{
	{
		version: 1,
		name:    "results and result_attempts",
		sql: map[string][]string{
			dialectPostgres: {
				// job_id is the primary key: the unique constraint that
				// keeps one result per job. COLLATE "C" orders ids by
				// bytes, as SQLite does, so pagination agrees everywhere.
				`CREATE TABLE IF NOT EXISTS results (
					job_id      TEXT COLLATE "C" PRIMARY KEY,
					queue       TEXT NOT NULL,
					type        TEXT NOT NULL DEFAULT '',
					lease_token BIGINT NOT NULL CHECK (lease_token > 0),
					worker_id   TEXT NOT NULL DEFAULT '',
					attempt     INTEGER NOT NULL DEFAULT 0,
					status      TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'dead')),
					output      BYTEA,
					error       TEXT NOT NULL DEFAULT '',
					started_at  TIMESTAMPTZ,
					finished_at TIMESTAMPTZ NOT NULL,
					created_at  TIMESTAMPTZ NOT NULL,
					updated_at  TIMESTAMPTZ NOT NULL
				)`,
				`CREATE INDEX IF NOT EXISTS results_finished_idx ON results (finished_at, job_id)`,
				`CREATE INDEX IF NOT EXISTS results_queue_finished_idx ON results (queue, finished_at, job_id)`,
				`CREATE INDEX IF NOT EXISTS results_status_finished_idx ON results (status, finished_at, job_id)`,
				`CREATE TABLE IF NOT EXISTS result_attempts (
					job_id      TEXT COLLATE "C" NOT NULL REFERENCES results (job_id) ON DELETE CASCADE,
					lease_token BIGINT NOT NULL,
					worker_id   TEXT NOT NULL DEFAULT '',
					attempt     INTEGER NOT NULL DEFAULT 0,
					status      TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'dead')),
					error       TEXT NOT NULL DEFAULT '',
					started_at  TIMESTAMPTZ,
					finished_at TIMESTAMPTZ NOT NULL,
					recorded_at TIMESTAMPTZ NOT NULL,
					outcome     TEXT NOT NULL CHECK (outcome IN ('stored', 'duplicate', 'already_succeeded', 'stale')),
					PRIMARY KEY (job_id, lease_token)
				)`,
			},
			dialectSQLite: {
				// TIMESTAMP as the declared type makes the driver hand
				// back time.Time; values are UTC text that sorts in time
				// order.
				`CREATE TABLE IF NOT EXISTS results (
					job_id      TEXT NOT NULL PRIMARY KEY,
					queue       TEXT NOT NULL,
					type        TEXT NOT NULL DEFAULT '',
					lease_token INTEGER NOT NULL CHECK (lease_token > 0),
					worker_id   TEXT NOT NULL DEFAULT '',
					attempt     INTEGER NOT NULL DEFAULT 0,
					status      TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'dead')),
					output      BLOB,
					error       TEXT NOT NULL DEFAULT '',
					started_at  TIMESTAMP,
					finished_at TIMESTAMP NOT NULL,
					created_at  TIMESTAMP NOT NULL,
					updated_at  TIMESTAMP NOT NULL
				)`,
				`CREATE INDEX IF NOT EXISTS results_finished_idx ON results (finished_at, job_id)`,
				`CREATE INDEX IF NOT EXISTS results_queue_finished_idx ON results (queue, finished_at, job_id)`,
				`CREATE INDEX IF NOT EXISTS results_status_finished_idx ON results (status, finished_at, job_id)`,
				`CREATE TABLE IF NOT EXISTS result_attempts (
					job_id      TEXT NOT NULL REFERENCES results (job_id) ON DELETE CASCADE,
					lease_token INTEGER NOT NULL,
					worker_id   TEXT NOT NULL DEFAULT '',
					attempt     INTEGER NOT NULL DEFAULT 0,
					status      TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'dead')),
					error       TEXT NOT NULL DEFAULT '',
					started_at  TIMESTAMP,
					finished_at TIMESTAMP NOT NULL,
					recorded_at TIMESTAMP NOT NULL,
					outcome     TEXT NOT NULL CHECK (outcome IN ('stored', 'duplicate', 'already_succeeded', 'stale')),
					PRIMARY KEY (job_id, lease_token)
				)`,
			},
		},
	},
}

// SchemaVersion is the newest schema version this build knows; a database
// at a newer version was migrated by a newer svcd and is refused rather than
// written with assumptions that may no longer hold.
var SchemaVersion = migrations[len(migrations)-1].version

// migrationLockKey is the PostgreSQL advisory lock that serializes svcd
// processes migrating the same database at once.
const migrationLockKey = 0x72617466_71737663 // "raftqsvc"

// migrate brings the schema to SchemaVersion. It is safe to run twice and
// from several processes at once: it runs in one transaction that first takes
// a lock (an advisory lock on PostgreSQL, the write lock that BEGIN IMMEDIATE
// takes on SQLite), then applies the steps schema_migrations lacks and
// records them. DDL is transactional on both backends, so a failed step
// leaves the schema as it was.
func migrate(ctx context.Context, db *gorm.DB, dialect string) error {
	tsType := "TIMESTAMPTZ"
	if dialect == dialectSQLite {
		tsType = "TIMESTAMP"
	}
	return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if dialect == dialectPostgres {
			if err := tx.Exec(`SELECT pg_advisory_xact_lock(?)`, int64(migrationLockKey)).Error; err != nil {
				return fmt.Errorf("lock for migrations: %w", err)
			}
		}
		if err := tx.Exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER NOT NULL PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at ` + tsType + ` NOT NULL
		)`).Error; err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var newest sql.NullInt64
		if err := tx.Raw(`SELECT MAX(version) FROM schema_migrations`).Scan(&newest).Error; err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if newest.Valid && int(newest.Int64) > SchemaVersion {
			return fmt.Errorf("database schema version %d is newer than this svcd knows (%d): upgrade svcd",
				newest.Int64, SchemaVersion)
		}
		for _, m := range migrations {
			if newest.Valid && m.version <= int(newest.Int64) {
				continue
			}
			stmts, ok := m.sql[dialect]
			if !ok {
				return fmt.Errorf("migration %d has no %s statements", m.version, dialect)
			}
			for _, s := range stmts {
				if err := tx.Exec(s).Error; err != nil {
					return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
				}
			}
			if err := tx.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, normTime(time.Now())).Error; err != nil {
				return fmt.Errorf("record migration %d: %w", m.version, err)
			}
		}
		return nil
	})
}
