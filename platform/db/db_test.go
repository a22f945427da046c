package db_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"orderflow/ent"
	"orderflow/internal/testenv"
	"orderflow/platform/db"
)

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
