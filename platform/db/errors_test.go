package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestCode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"wrapped", fmt.Errorf("insert user: %w", &pgconn.PgError{Code: UniqueViolation}), UniqueViolation},
		{"as it is", &pgconn.PgError{Code: DeadlockDetected}, DeadlockDetected},
		{"no PostgreSQL error", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), ""},
		{"nil", nil, ""},
	}
	for _, c := range cases {
		if got := Code(c.err); got != c.want {
			t.Errorf("%s: Code(%v) = %q, want %q", c.name, c.err, got, c.want)
		}
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("begin transaction: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), true},
		{"no connection opened", fmt.Errorf("begin transaction: %w", &pgconn.ConnectError{}), true},
		{"bad connection", fmt.Errorf("start processing order 1: %w", driver.ErrBadConn), true},
		{"connection done", fmt.Errorf("commit transaction: %w", sql.ErrConnDone), true},
		{"closed connection", fmt.Errorf("begin transaction: ent: starting a transaction: %w", pgconn.ErrConnClosed), true},
		{"end of file", fmt.Errorf("insert order: %w", io.EOF), true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, true},
		{"database dropped", &pgconn.PgError{Code: "57P04"}, false},
		{"idle session timeout", fmt.Errorf("insert order: %w", &pgconn.PgError{Code: "57P05"}), true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"read-only server", fmt.Errorf("complete order 1: %w", &pgconn.PgError{Code: "25006"}), true},
		{"protocol violation", &pgconn.PgError{Code: "08P01"}, false},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"out of memory", &pgconn.PgError{Code: "53200"}, true},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, false},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, false},
		{"no answer in time", fmt.Errorf("%w within 30s: commit transaction: %w", ErrNoAnswer, sql.ErrTxDone), true},
		{"unique violation", fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23505"}), false},
		{"check violation", &pgconn.PgError{Code: "23514"}, false},
		{"syntax error", &pgconn.PgError{Code: "42601"}, false},
		{"query cancelled", &pgconn.PgError{Code: "57014"}, false},
		{"plain error", errors.New("mail server unavailable"), false},
		{"cancelled", context.Canceled, false},
		{"deadline", fmt.Errorf("insert order: %w", context.DeadlineExceeded), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := Unavailable(c.err); got != c.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// notSent is an error of pgx's that says nothing was sent (pgconn.SafeToRetry).
type notSent struct{}

func (notSent) Error() string     { return "not sent" }
func (notSent) SafeToRetry() bool { return true }

func TestChangedNothing(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"no connection opened", fmt.Errorf("claim: %w", &pgconn.ConnectError{}), true},
		{"a bad connection, before writing", fmt.Errorf("claim: %w", driver.ErrBadConn), true},
		{"nothing sent, says pgx", fmt.Errorf("claim: %w", notSent{}), true},
		{"the statement failed", &pgconn.PgError{Severity: "ERROR", Code: DeadlockDetected}, true},
		{"the session ended", &pgconn.PgError{Severity: "FATAL", Code: AdminShutdown}, false},
		{"the statement failed, said in French", &pgconn.PgError{Severity: "ERREUR", SeverityUnlocalized: "ERROR", Code: DeadlockDetected}, true},
		{"the session ended, said in Russian", &pgconn.PgError{Severity: "ВАЖНО", SeverityUnlocalized: "FATAL", Code: AdminShutdown}, false},
		{"the connection dropped under it", fmt.Errorf("claim: %w", io.ErrUnexpectedEOF), false},
		{"an ended context, as it is", fmt.Errorf("claim: %w", context.DeadlineExceeded), false},
	} {
		if got := ChangedNothing(c.err); got != c.want {
			t.Errorf("%s: ChangedNothing(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
