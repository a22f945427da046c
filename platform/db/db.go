// Package db opens orderflow's PostgreSQL pool and the ent client on top of it, and holds
// two helpers for the processes' database work: WithTx runs a function in a transaction, and
// Bounded gives work a time limit, so that a database that stops answering cannot hold it up
// for long.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver
	"go.uber.org/fx"

	"orderflow/configuration"
	"orderflow/ent"
)

// Module provides the *sql.DB pool and the *ent.Client of a process, and closes the pool,
// which the client shares, on stop.
var Module = fx.Module("db",
	fx.Provide(NewPool, NewClient),
)

// IdleInTransactionTimeout is how long PostgreSQL keeps a transaction of orderflow's open
// while it waits for the client's next statement. orderflow's transactions send their
// statements back to back and end within their own bounds (30 s at most), so a transaction
// idle that long has lost its client: a process killed, or a host gone without closing its
// connections, which the server would notice only when TCP gave up, up to two hours later.
// Until then the transaction would keep the rows it locked: the products of an order being
// stored, which every order for them would wait for.
const IdleInTransactionTimeout = time.Minute

// Open opens a connection pool to the configured database and checks that it answers. Its
// connections have IdleInTransactionTimeout set, and a connection whose server refuses a
// write as read-only is closed, as pgx closes one after a FATAL error: the pool then opens a
// new one, which reaches the server that took over after a failover. Each connection to the
// old primary is replaced when it meets the refusal.
func Open(ctx context.Context, cfg configuration.Database) (*sql.DB, error) {
	connCfg, err := pgx.ParseConfig(cfg.DSN())
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	connCfg.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(IdleInTransactionTimeout.Milliseconds(), 10)
	keep := connCfg.OnPgError
	connCfg.OnPgError = func(conn *pgconn.PgConn, pgErr *pgconn.PgError) bool {
		return pgErr.Code != ReadOnlyTransaction && (keep == nil || keep(conn, pgErr))
	}
	pool := stdlib.OpenDB(*connCfg)
	pool.SetMaxOpenConns(cfg.MaxConns)
	pool.SetMaxIdleConns(cfg.MaxConns)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database %s at %s:%d: %w", cfg.Name, cfg.Host, cfg.Port, err)
	}
	return pool, nil
}

// NewPool opens the pool for an fx app; start-up fails when the database is unreachable.
func NewPool(lc fx.Lifecycle, cfg *configuration.Config) (*sql.DB, error) {
	pool, err := Open(context.Background(), cfg.Database)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(pool.Close))
	return pool, nil
}

// NewClient wraps the pool in an ent client.
func NewClient(pool *sql.DB) *ent.Client {
	return ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, pool)))
}

// WithTx runs fn in a transaction, committing when it returns nil and rolling back when it
// returns an error or panics.
func WithTx(ctx context.Context, client *ent.Client, fn func(tx *ent.Tx) error) (err error) {
	tx, err := client.Tx(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback()
			panic(v)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return fmt.Errorf("%w (rollback: %v)", err, rerr)
		}
		return err
	}
	return Commit(ctx, tx)
}

// Commit commits tx, begun with ctx. When ctx ended before the commit, database/sql rolled
// the transaction back and never sent the commit: the error is then the context's, not
// "transaction has already been committed or rolled back", which reads as if it committed.
func Commit(ctx context.Context, tx interface{ Commit() error }) error {
	if err := tx.Commit(); err != nil {
		if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
			return fmt.Errorf("commit transaction: %w", ctx.Err())
		}
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// StartWaitNotice is how often a process's start, while its database work waits, says so.
const StartWaitNotice = 10 * time.Second

// Waits tells, for as long as it runs, what a start waits for: a warning every 'every'.
type Waits struct{ stop, done chan struct{} }

// NoticeWaits warns every 'every', until Stop, that step still waits for the database, with
// the time waited: start-up work whose database answered the ping and then nothing (a
// stalled disk, a lock another session holds) says what it waits for.
func NoticeWaits(ctx context.Context, log *slog.Logger, step string, every time.Duration) *Waits {
	w := &Waits{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				log.WarnContext(ctx, "start-up still waits for the database", "step", step,
					"waited", time.Since(start).Round(time.Second).String())
			}
		}
	}()
	return w
}

// Stop ends the warnings; none comes after it returns.
func (w *Waits) Stop() {
	close(w.stop)
	<-w.done
}

// ErrNoAnswer marks database work cut off by the bound Bounded gave it.
var ErrNoAnswer = errors.New("no answer from the database")

// Bounded runs fn with a context that ends after d. A database that stops answering without
// closing its connection (a host that went away, a failover behind the same address) would
// otherwise hold fn until TCP gave up, up to a quarter of an hour; when the context ends, pgx
// closes the connection, and the next use of the pool opens another. An error of fn once d
// has passed (and ctx has not ended) wraps ErrNoAnswer, whatever the statement failed with.
// Work cut off after its statement was sent may have committed, as on a dropped connection.
func Bounded(ctx context.Context, d time.Duration, fn func(context.Context) error) error {
	bctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := fn(bctx)
	if err != nil && ctx.Err() == nil && errors.Is(bctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w within %s: %w", ErrNoAnswer, d, err)
	}
	return err
}
