package worker

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"orderflow/platform/db"
)

func TestConflicted(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"deadlock", fmt.Errorf("claim 3 orders: %w", &pgconn.PgError{Severity: "ERROR", Code: "40P01"}), true},
		{"serialization failure", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"connection failure", &pgconn.PgError{Code: "08006"}, false},
		{"plain error", errors.New("deadlock"), false},
	}
	for _, c := range cases {
		if got := conflicted(c.err); got != c.want {
			t.Errorf("%s: conflicted(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestRetryConflictsWithoutAnOutage: work that PostgreSQL rolled back for a conflict is run
// again, as work that found the database unavailable is, but only the latter is logged as an
// outage; other errors are returned at once.
func TestRetryConflictsWithoutAnOutage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		err     error
		retried bool
		outage  bool
	}{
		{"deadlock", &pgconn.PgError{Severity: "ERROR", Code: "40P01"}, true, false},
		{"connection failure", &pgconn.PgError{Severity: "FATAL", Code: "08006"}, true, true},
		{"unique violation", &pgconn.PgError{Severity: "ERROR", Code: "23505"}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			w := New(nil, slog.New(slog.NewTextHandler(&logs, nil)), Options{})
			calls := 0
			err := w.retry(context.Background(), func(context.Context) error {
				if calls++; calls == 1 {
					return c.err
				}
				return nil
			})
			switch {
			case c.retried && (err != nil || calls != 2):
				t.Errorf("calls %d, error %v: want a retry that succeeds", calls, err)
			case !c.retried && (!errors.Is(err, c.err) || calls != 1):
				t.Errorf("calls %d, error %v: want the error returned at once", calls, err)
			}
			if outage := strings.Contains(logs.String(), "database unavailable"); outage != c.outage {
				t.Errorf("outage logged %v, want %v; log:\n%s", outage, c.outage, logs.String())
			}
		})
	}
}

func TestChangedNothing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"no connection opened", fmt.Errorf("start processing order 1: %w", &pgconn.ConnectError{}), true},
		{"bad connection", fmt.Errorf("start processing order 1: %w", driver.ErrBadConn), true},
		{"no connection from the pool in time", fmt.Errorf("%w within 30s: %w", db.ErrNoAnswer, context.DeadlineExceeded), true},
		{"the server shutting down", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, false},
		{"a deadlock", fmt.Errorf("claim 3 orders: %w", &pgconn.PgError{Severity: "ERROR", Code: "40P01"}), true},
		{"a serialization failure", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, true},
		{"rows cut off in time", fmt.Errorf("claim 3 orders: %w: %w", errAnswerCut, context.DeadlineExceeded), false},
		{"rows cut off by a bad connection", fmt.Errorf("claim 3 orders: %w: %w", errAnswerCut, driver.ErrBadConn), false},
	}
	for _, c := range cases {
		if got := changedNothing(c.err); got != c.want {
			t.Errorf("%s: changedNothing(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
