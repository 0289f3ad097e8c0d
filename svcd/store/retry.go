package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/jackc/pgx/v5/pgconn"
)

// RetryPolicy bounds the retries of transient database errors (lock
// contention, serialization failures, lost connections). Delays grow
// exponentially from BaseDelay to MaxDelay with full jitter, so writers that
// collided do not collide again in step.
type RetryPolicy struct {
	// MaxAttempts counts the first try; default 6. 1 disables retries.
	MaxAttempts int
	BaseDelay   time.Duration // default 10ms
	MaxDelay    time.Duration // default 1s
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 6
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 10 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = time.Second
	}
	return p
}

// do runs op, retrying it while it fails with a transient error, the
// policy allows another attempt and ctx is live. When the retries run out on
// a transient error, the error wraps ErrUnavailable so the transports can
// tell clients to come back later.
func (s *Store) do(ctx context.Context, op func() error) error {
	return s.retry.run(ctx, op)
}

func (p RetryPolicy) run(ctx context.Context, op func() error) error {
	p = p.withDefaults()
	delay := p.BaseDelay
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if !IsTransient(err) {
			return err
		}
		if attempt >= p.MaxAttempts {
			return fmt.Errorf("%w after %d attempts: %w", ErrUnavailable, attempt, err)
		}
		sleep := time.Duration(rand.Int64N(int64(delay)) + 1)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, p.MaxDelay)
	}
}

// SQLite primary result codes that mean "try again".
const (
	sqliteBusy     = 5
	sqliteLocked   = 6
	sqliteProtocol = 15
)

// transientPgCodes are the PostgreSQL SQLSTATEs after which the same
// transaction may well succeed.
var transientPgCodes = map[string]bool{
	"40001": true, // serialization_failure
	"40P01": true, // deadlock_detected
	"55P03": true, // lock_not_available
	"53300": true, // too_many_connections
	"57P01": true, // admin_shutdown
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now
}

// IsTransient reports whether err is worth retrying: nothing about the
// request is wrong, the database was busy or out of reach. Retrying a write
// after a lost connection is safe even when the commit did happen, because
// the replay is answered as a duplicate.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var se *gosqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteBusy, sqliteLocked, sqliteProtocol:
			return true
		}
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return transientPgCodes[pe.Code] || len(pe.Code) == 5 && pe.Code[:2] == "08" // 08xxx: connection exceptions
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

func toNullTime(t time.Time) sql.NullTime {
	if t.IsZero() {
		return sql.NullTime{}
	}
	return sql.NullTime{Time: normTime(t), Valid: true}
}

func fromNullTime(t sql.NullTime) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}
