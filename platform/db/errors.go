package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes that orderflow reacts to.
const (
	UniqueViolation      = "23505"
	ForeignKeyViolation  = "23503"
	SerializationFailure = "40001"
	DeadlockDetected     = "40P01"
	LockNotAvailable     = "55P03"
	ReadOnlyTransaction  = "25006"
	AdminShutdown        = "57P01"
	CrashShutdown        = "57P02"
	CannotConnectNow     = "57P03"
	IdleSessionTimeout   = "57P05"
	ProtocolViolation    = "08P01"
)

// SQLSTATE classes that orderflow reacts to: a code of the class starts with it.
const (
	ClassConnectionException   = "08"
	ClassInsufficientResources = "53"
)

// Code returns the SQLSTATE of the PostgreSQL error in err's chain, or "" when there is none.
func Code(err error) string { return pgError(err).Code }

// Constraint returns the name of the constraint that the PostgreSQL error in err's chain
// names, or "" when there is none.
func Constraint(err error) string { return pgError(err).ConstraintName }

// pgError returns the PostgreSQL error in err's chain, or a zero one when there is none.
func pgError(err error) *pgconn.PgError {
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
		return pgErr
	}
	return &pgconn.PgError{}
}

// Unavailable reports whether err says that the database is not answering (it could not be
// reached, dropped the connection, is shutting down or starting up, takes no writes, or lacks
// the resources for the work) rather than anything about the work itself: the same work may succeed later,
// on another connection. The API answers such an error with 503, and the worker waits and
// tries again.
//
// An ended context is not on the list: whose context it was and why it ended is the
// caller's to tell (a request that ran out of time, a process that stops). Work that
// Bounded cut off is on it, as ErrNoAnswer: the bound says that the database took too long.
// Neither are pgconn.SafeToRetry and pgconn.Timeout: the first says that nothing reached the
// server, not that the server is away (and database/sql gets such a failure of a connection
// as driver.ErrBadConn), and the second reports an ended context.
func Unavailable(err error) bool {
	switch code := Code(err); {
	case code == ProtocolViolation:
		// In the connection-exception class, but the server says that what it was sent
		// breaks the protocol: the same work would break it again.
		return false
	case strings.HasPrefix(code, ClassConnectionException):
		// The server reports the connection as broken or refuses to open it.
		return true
	case strings.HasPrefix(code, ClassInsufficientResources):
		// Too many connections, out of memory or disk: nothing is wrong with the work,
		// and the server may have what it needs later.
		return true
	case code == AdminShutdown, code == CrashShutdown:
		// The server is stopping or restarting and ended the session; a new connection
		// reaches it again once it is back, or reaches the server that took over.
		return true
	case code == CannotConnectNow:
		// The server is starting up or recovering and takes no connections yet.
		return true
	case code == IdleSessionTimeout:
		// The server closed a session that the pool kept idle for too long; a new
		// connection works at once.
		return true
	case code == ReadOnlyTransaction:
		// orderflow writes in no read-only transaction (it only reads in one): the server
		// takes no writes, being a standby now (a failover behind the same address) or made read-only for a while.
		// Open closes such a connection, and a new one may reach the server that took
		// over.
		return true
	case code != "":
		// Any other answer of the server is about the work: the server is answering.
		// That includes 57P04 (the database was dropped), which no retry fixes.
		return false
	}
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
	)
	switch {
	case errors.Is(err, ErrNoAnswer):
		// Bounded cut the work off: the server took longer than any statement of ours
		// should, which is how a host that went away without closing its connections
		// shows.
		return true
	case errors.As(err, &connectErr):
		// No connection could be opened.
		return true
	case errors.As(err, &netErr) && !errors.Is(err, context.DeadlineExceeded):
		// The network failed under a connection. context.DeadlineExceeded is a net.Error
		// too, but an ended context is not the database's doing.
		return true
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone), errors.Is(err, pgconn.ErrConnClosed):
		// The connection broke. pgx reports the statements that follow one that lost its
		// connection, in the same transaction, with these.
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// The server closed the connection while a statement was under way, as a restart
		// or a failover does.
		return true
	}
	return false
}

// ChangedNothing reports an error after which the statement (or transaction) that failed
// surely changed nothing: an error that came before it reached the database (no connection
// could be opened, the driver found the connection broken before writing to it, or pgx says
// that nothing was sent, pgconn.SafeToRetry), or the database's answer that it failed (an
// error of severity ERROR, such as a constraint's, a deadlock or a serialization failure,
// which rolls the statement and its transaction back). Any other failure, a FATAL one
// included, may have come after a commit.
func ChangedNothing(err error) bool {
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
		// Severity is in the server's language (lc_messages: "ERREUR", "FEHLER");
		// SeverityUnlocalized, sent by every supported server, is not.
		severity := pgErr.SeverityUnlocalized
		if severity == "" {
			severity = pgErr.Severity
		}
		return severity == "ERROR"
	}
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr) || errors.Is(err, driver.ErrBadConn) || pgconn.SafeToRetry(err)
}

// NotSent reports an error after which a statement run without a transaction of its own
// surely changed nothing: ChangedNothing, or its deadline passed before it had a connection
// to be sent on (waiting for the pool, or for the check of an idle connection), where
// database/sql returns the context's error as it is, while pgx wraps the error of a
// statement it sent (pgconn.Timeout). database/sql also returns the context's error as it is
// when the context ends while it reads a statement's rows, after the statement ran: a
// caller that reads rows tells that case apart itself.
func NotSent(err error) bool {
	return ChangedNothing(err) || (errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err))
}
