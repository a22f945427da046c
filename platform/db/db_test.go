package db_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"orderflow/ent"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/db"
)

// TestOpenEndsTransactionsLeftIdle: the pool's connections carry
// IdleInTransactionTimeout, with which the server ends a transaction whose client went away.
func TestOpenEndsTransactionsLeftIdle(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, testenv.EmptyDatabase(t))
	var ms int64
	if err := pool.QueryRow(`SELECT setting::bigint FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'`).Scan(&ms); err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(ms) * time.Millisecond; got != db.IdleInTransactionTimeout {
		t.Errorf("idle_in_transaction_session_timeout = %s, want %s", got, db.IdleInTransactionTimeout)
	}
}

// TestOpenReplacesAConnectionToAReadOnlyServer: a write refused as read-only, as by a server
// that a failover left a standby, is an outage (503, try again) and closes its connection, so
// that the next attempt opens a new one instead of asking the same session again.
func TestOpenReplacesAConnectionToAReadOnlyServer(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, testenv.EmptyDatabase(t))
	pool.SetMaxOpenConns(1)
	if _, err := pool.Exec(`CREATE TABLE t (x int)`); err != nil {
		t.Fatal(err)
	}
	// The pool's one session now refuses writes, as a standby's would.
	if _, err := pool.Exec(`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Exec(`INSERT INTO t VALUES (1)`)
	if db.Code(err) != db.ReadOnlyTransaction || !db.Unavailable(err) {
		t.Fatalf("insert on a read-only session: %v, want %s and unavailable", err, db.ReadOnlyTransaction)
	}
	if _, err := pool.Exec(`INSERT INTO t VALUES (2)`); err != nil {
		t.Fatalf("insert after the read-only answer: %v, want it on a new connection", err)
	}
}

// TestNoticeWaits: the warnings come while the wait lasts, name its step, and end with it.
func TestNoticeWaits(t *testing.T) {
	t.Parallel()
	var buf testutil.Buffer
	w := db.NoticeWaits(context.Background(), slog.New(slog.NewJSONHandler(&buf, nil)), "check the migrations", 10*time.Millisecond)
	testutil.Eventually(t, 5*time.Second, "two warnings", func() bool {
		return strings.Count(buf.String(), `"msg":"start-up still waits for the database","step":"check the migrations","waited":`) >= 2
	})
	w.Stop()
	logged := buf.String()
	time.Sleep(50 * time.Millisecond) // five periods
	if buf.String() != logged {
		t.Errorf("warnings after Stop:\n%s", strings.TrimPrefix(buf.String(), logged))
	}
}

// TestWithTxEndedBeforeCommit: a transaction whose context ends before its commit is rolled
// back by database/sql, and WithTx says so with the context's error, which callers answer as
// a deadline (503, try again), not as "transaction has already been committed or rolled
// back", which reads as a bug.
func TestWithTxEndedBeforeCommit(t *testing.T) {
	t.Parallel()
	client := db.NewClient(testenv.Pool(t, testenv.EmptyDatabase(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := db.WithTx(ctx, client, func(tx *ent.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT 1`); err != nil {
			return err
		}
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond) // database/sql rolls back once it sees ctx end
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sql.ErrTxDone) {
		t.Fatalf("WithTx = %v, want context.DeadlineExceeded", err)
	}
}

// TestCommitEndedBeforeCommit: Commit of a database/sql transaction, as the sweep and the
// relay run, says what WithTx says.
func TestCommitEndedBeforeCommit(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, testenv.EmptyDatabase(t))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	tx, err := pool.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	// database/sql rolls back once it sees ctx end, and gives the connection back.
	testutil.Eventually(t, 30*time.Second, "the rollback", func() bool { return pool.Stats().InUse == 0 })
	if err := db.Commit(ctx, tx); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sql.ErrTxDone) {
		t.Fatalf("Commit = %v, want context.DeadlineExceeded", err)
	}
}

// TestNotSent: a statement whose deadline passed while it ran was sent; one whose deadline
// passed before it had a connection, or that failed before it was written, was not.
func TestNotSent(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, testenv.EmptyDatabase(t))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, ranOut := pool.ExecContext(ctx, `SELECT pg_sleep(5)`)
	if ranOut == nil || db.NotSent(ranOut) {
		t.Errorf("a statement cut off while it ran: %v, NotSent %v; want an error of a sent statement", ranOut, db.NotSent(ranOut))
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"no connection from the pool in time", fmt.Errorf("claim: %w", context.DeadlineExceeded), true},
		{"no connection opened", fmt.Errorf("claim: %w", &pgconn.ConnectError{}), true},
		{"the statement failed", &pgconn.PgError{Severity: "ERROR", Code: db.DeadlockDetected}, true},
		{"the connection dropped under it", fmt.Errorf("claim: %w", io.ErrUnexpectedEOF), false},
		{"cancelled, sent or not", fmt.Errorf("claim: %w", context.Canceled), false},
	} {
		if got := db.NotSent(c.err); got != c.want {
			t.Errorf("%s: NotSent(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
