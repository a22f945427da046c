// Package migrate applies orderflow's embedded Atlas migrations to PostgreSQL the way
// `atlas migrate apply` does: under the CLI's lock, one transaction per file, recording
// revisions in the CLI's table, so that the Atlas CLI and orderflow agree about a database.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
	"github.com/jackc/pgx/v5/pgconn"

	"orderflow/migrations"
)

const (
	// lockName is the advisory lock `atlas migrate apply` takes, so that the CLI and
	// orderflow processes never apply migrations to one database at the same time.
	lockName = "atlas_migrate_execute"
	// lockTimeout bounds the wait for another process that is applying migrations.
	lockTimeout = time.Minute
	// lockRetry is how often the lock is tried while another process holds it.
	lockRetry = 250 * time.Millisecond
	// tableLockTimeout bounds a migration's wait for a lock on a table. While a statement
	// such as ALTER TABLE waits, every query on that table queues behind it: without a bound,
	// one long transaction (a report, a dump) would stop the order intake for as long as it
	// runs. The migration gives up instead, and is applied at the next start.
	tableLockTimeout = 5 * time.Second
)

// dirCount numbers the in-memory directories, whose names must be unique in a process.
var dirCount atomic.Int64

// Apply applies the pending embedded migrations to db and returns how many files it applied.
// A database that is up to date is left alone (0 applied).
func Apply(ctx context.Context, db *sql.DB, log *slog.Logger) (applied int, err error) {
	return ApplyFS(ctx, db, migrations.FS, log)
}

// ApplyFS is Apply for the migration directory fsys (SQL files and atlas.sum at its root).
func ApplyFS(ctx context.Context, db *sql.DB, fsys fs.FS, log *slog.Logger) (applied int, err error) {
	return applyFS(ctx, db, fsys, log, lockTimeout)
}

// applyFS is ApplyFS waiting at most lockWait for another process's migration lock.
func applyFS(ctx context.Context, db *sql.DB, fsys fs.FS, log *slog.Logger, lockWait time.Duration) (applied int, err error) {
	dir, err := OpenDir(fsys)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	// Everything below runs on the connection that holds the lock: the pool may have no
	// other (database.maxConns 1), and a second one would wait for it forever.
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	drv, err := postgres.Open(conn)
	if err != nil {
		return 0, fmt.Errorf("open atlas driver: %w", err)
	}
	unlock, err := lock(ctx, conn, lockWait)
	if errors.Is(err, schema.ErrLocked) {
		return 0, lockHeld(ctx, conn, lockWait, err)
	}
	if err != nil {
		return 0, err
	}
	defer func() {
		if uerr := unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("release migration lock: %w", uerr)
		}
	}()
	if err := validate(dir); err != nil {
		return 0, err
	}
	revs, err := revisions{db: conn}.ReadRevisions(ctx)
	if err != nil {
		return 0, err
	}
	if err := checkClean(ctx, drv, revs); err != nil {
		return 0, err
	}
	if err := createRevisionTable(ctx, conn); err != nil {
		return 0, err
	}
	pending, err := pendingFiles(ctx, drv, dir, readRevisions{revisions{db: conn}, revs})
	if err != nil {
		return 0, err
	}
	if err := warnUnknown(ctx, dir, revs, log); err != nil {
		return 0, err
	}
	if len(pending) == 0 {
		log.DebugContext(ctx, "database schema is up to date")
		return 0, nil
	}
	for _, f := range pending {
		start := time.Now()
		if err := applyFile(ctx, conn, dir, f, log); err != nil {
			return applied, err
		}
		applied++
		log.InfoContext(ctx, "migration applied", "version", f.Version(), "description", f.Desc(),
			"duration", time.Since(start))
	}
	return applied, nil
}

// maxNamed is how many missing migrations Require names; a database lacking more is far
// behind, and the first of them say enough.
const maxNamed = 5

// Require checks that db has every embedded migration, for the processes that never apply
// them (the worker and the cron job), and writes nothing. A database without some fails
// with an error that names them and what to do. One that a newer version migrated passes,
// with the warning Apply gives: rolling the binary back keeps working.
func Require(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	return RequireFS(ctx, db, migrations.FS, log)
}

// RequireFS is Require for the migration directory fsys.
func RequireFS(ctx context.Context, db *sql.DB, fsys fs.FS, log *slog.Logger) error {
	dir, err := OpenDir(fsys)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := validate(dir); err != nil {
		return err
	}
	revs, err := revisions{db: db}.ReadRevisions(ctx)
	if err != nil {
		return err
	}
	missing, err := missingFiles(ctx, db, dir, revs)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return warnUnknown(ctx, dir, revs, log)
	}
	var name string
	if err := db.QueryRowContext(ctx, `SELECT current_database()`).Scan(&name); err != nil {
		return fmt.Errorf("look up the database name: %w", err)
	}
	var names []string
	for _, f := range missing[:min(len(missing), maxNamed)] {
		names = append(names, f.Name())
	}
	list := strings.Join(names, ", ")
	if more := len(missing) - len(names); more > 0 {
		list += fmt.Sprintf(" and %d more", more)
	}
	noun := "migrations"
	if len(missing) == 1 {
		noun = "migration"
	}
	return fmt.Errorf(`database %s lacks %d %s this version needs (%s): start the api or run "orderflow migrate" first`,
		name, len(missing), noun, list)
}

// missingFiles lists the files of dir that db, whose revisions are revs, lacks: those Apply
// would apply, so that Require accepts the databases on which the api has nothing to do.
// Unlike Apply, it writes nothing.
func missingFiles(ctx context.Context, db *sql.DB, dir migrate.Dir, revs []*migrate.Revision) ([]migrate.File, error) {
	if len(revs) == 0 {
		// Without history every file is missing; Atlas's executor would first require the
		// database to be empty, which is Apply's concern, not this check's.
		files, err := dir.Files()
		if err != nil {
			return nil, fmt.Errorf("list migrations: %w", err)
		}
		return files, nil
	}
	drv, err := postgres.Open(db)
	if err != nil {
		return nil, fmt.Errorf("open atlas driver: %w", err)
	}
	return pendingFiles(ctx, drv, dir, readRevisions{revisions{db: db}, revs})
}

// Pending returns the names of the embedded migration files that are not applied to db yet.
// It fails when atlas.sum does not match the files.
func Pending(ctx context.Context, db *sql.DB) ([]string, error) {
	return PendingFS(ctx, db, migrations.FS)
}

// PendingFS is Pending for the migration directory fsys.
func PendingFS(ctx context.Context, db *sql.DB, fsys fs.FS) ([]string, error) {
	dir, err := OpenDir(fsys)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	drv, err := postgres.Open(db)
	if err != nil {
		return nil, fmt.Errorf("open atlas driver: %w", err)
	}
	if err := validate(dir); err != nil {
		return nil, err
	}
	files, err := pendingFiles(ctx, drv, dir, revisions{db: db})
	if err != nil {
		return nil, err
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name()
	}
	return names, nil
}

// State describes which migrations a database has.
type State struct {
	// Applied lists the versions recorded in the revisions table, oldest first.
	Applied []string
	// Pending lists the migration files still to apply, in order.
	Pending []string
}

// Status reports the applied and pending embedded migrations of db.
func Status(ctx context.Context, db *sql.DB) (State, error) {
	pending, err := Pending(ctx, db)
	if err != nil {
		return State{}, err
	}
	revs, err := revisions{db: db}.ReadRevisions(ctx)
	if err != nil {
		return State{}, err
	}
	s := State{Pending: pending}
	for _, r := range revs {
		s.Applied = append(s.Applied, r.Version)
	}
	return s, nil
}

// OpenDir copies the migration directory fsys into an in-memory Atlas directory, keeping
// atlas.sum as it is so that a file changed after hashing is detected. Close it when done.
func OpenDir(fsys fs.FS) (*migrate.MemDir, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	names = append(names, migrate.HashFileName)
	dir := migrate.OpenMemDir(fmt.Sprintf("orderflow-migrations-%d", dirCount.Add(1)))
	for _, name := range names {
		b, err := fs.ReadFile(fsys, path.Clean(name))
		if err != nil {
			dir.Close()
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		if err := dir.WriteFile(name, b); err != nil {
			dir.Close()
			return nil, fmt.Errorf("load migration %s: %w", name, err)
		}
	}
	return dir, nil
}

// validate checks the migration files against atlas.sum.
func validate(dir migrate.Dir) error {
	if err := migrate.Validate(dir); err != nil {
		return fmt.Errorf("migration files do not match atlas.sum (a file was changed, added or removed without rehashing): %w", err)
	}
	return nil
}

// pendingFiles lists the files to apply, after the revisions rrw reads; the executor
// verifies atlas.sum again.
func pendingFiles(ctx context.Context, drv migrate.Driver, dir migrate.Dir, rrw migrate.RevisionReadWriter) ([]migrate.File, error) {
	ex, err := migrate.NewExecutor(drv, dir, rrw)
	if err != nil {
		return nil, fmt.Errorf("create migration executor: %w", err)
	}
	files, err := ex.Pending(ctx)
	if errors.Is(err, migrate.ErrNoPendingFiles) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find pending migrations: %w", err)
	}
	return files, nil
}

// checkClean refuses a database that holds tables or schemas but no revisions (revs): the
// database of something else, into which the migrations would be mixed. It runs before
// anything is written, so that such a database is left as it was.
func checkClean(ctx context.Context, drv migrate.Driver, revs []*migrate.Revision) error {
	if len(revs) > 0 {
		return nil
	}
	err := drv.CheckClean(ctx, revisions{}.Ident())
	if nc := (*migrate.NotCleanError)(nil); errors.As(err, &nc) {
		return fmt.Errorf("the database is not empty but has no migration history (%s): orderflow migrates only an empty database or one that it, or the Atlas CLI, migrated before; set database.name to a new database", nc.Reason)
	}
	if err != nil {
		return fmt.Errorf("inspect the database: %w", err)
	}
	return nil
}

// warnUnknown warns when revs, the revisions of the database, hold versions that no file of
// dir has. Atlas counts a revision newer than every file as the last one applied, so a
// database that a newer orderflow migrated looks up to date.
func warnUnknown(ctx context.Context, dir migrate.Dir, revs []*migrate.Revision, log *slog.Logger) error {
	files, err := dir.Files()
	if err != nil {
		return fmt.Errorf("list migrations: %w", err)
	}
	known := make(map[string]bool, len(files))
	for _, f := range files {
		known[f.Version()] = true
	}
	var unknown []string
	for _, r := range revs {
		if !known[r.Version] {
			unknown = append(unknown, r.Version)
		}
	}
	if len(unknown) > 0 {
		log.WarnContext(ctx, "the database has migrations that this orderflow does not have, applied by a newer version; its schema may not be the one this version expects",
			"versions", unknown)
	}
	return nil
}

// applyFile applies one migration file and records its revision in one transaction.
func applyFile(ctx context.Context, conn *sql.Conn, dir migrate.Dir, f migrate.File, log *slog.Logger) (err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration %s: %w", f.Name(), err)
	}
	defer func() {
		if err != nil {
			if rerr := tx.Rollback(); rerr != nil {
				err = fmt.Errorf("%w (rollback: %v)", err, rerr)
			}
		}
	}()
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", tableLockTimeout.Milliseconds())); err != nil {
		return fmt.Errorf("begin migration %s: %w", f.Name(), err)
	}
	drv, err := postgres.Open(tx)
	if err != nil {
		return fmt.Errorf("open atlas driver: %w", err)
	}
	ex, err := migrate.NewExecutor(drv, dir, revisions{db: tx},
		migrate.WithLogger(logger{ctx: ctx, log: log}), migrate.WithOperatorVersion(operatorVersion))
	if err != nil {
		return fmt.Errorf("create migration executor: %w", err)
	}
	if err := ex.Execute(ctx, f); err != nil {
		return failed(f, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migration %s: %w", f.Name(), err)
	}
	return nil
}

// lockNotAvailable is the SQLSTATE of a statement that gave up waiting for a lock, as
// db.LockNotAvailable: written again here, since platform/db would bring ent into
// cmd/migrationgen.
const lockNotAvailable = "55P03"

// maxStmtChars bounds how much of a failed statement its error quotes.
const maxStmtChars = 200

// failed describes the failure of file f as one line: the statement and the database's
// reason, that nothing of the file was kept, and what to do. When a statement fails, the
// executor's attempt to record the failure in the aborted transaction fails too; that second
// error says nothing of the cause and is left out.
func failed(f migrate.File, err error) error {
	var se *migrate.StmtExecError
	if !errors.As(err, &se) {
		return fmt.Errorf("apply migration %s: %w", f.Name(), err)
	}
	reason := se.Err.Error()
	if pe := (*pgconn.PgError)(nil); errors.As(se.Err, &pe) && pe.Detail != "" {
		reason += ": " + pe.Detail
	}
	todo := "correct the rows that break it, or the migration in a new file, then start again"
	if pe := (*pgconn.PgError)(nil); errors.As(se.Err, &pe) && pe.Code == lockNotAvailable {
		reason = fmt.Sprintf("waited more than %s for a lock that another transaction holds", tableLockTimeout)
		todo = "start again once long transactions on the table have ended (pg_stat_activity lists them)"
	}
	stmt := []rune(strings.Join(strings.Fields(se.Stmt.Text), " "))
	if len(stmt) > maxStmtChars {
		stmt = append(stmt[:maxStmtChars], '…')
	}
	return explainedError{
		msg: fmt.Sprintf("apply migration %s: %s (statement: %s); the file was rolled back and the database is as it was: %s",
			f.Name(), strings.Join(strings.Fields(reason), " "), string(stmt), todo),
		err: se.Err,
	}
}

// lockKey is the key of the advisory lock that `atlas migrate apply` takes: the 32-bit FNV-1
// hash of lockName, as Atlas's PostgreSQL driver computes it.
func lockKey() int64 {
	key := fnv.New32()
	key.Write([]byte(lockName))
	return int64(key.Sum32())
}

// lock takes the migration lock on conn, trying again every lockRetry while another session
// holds it, until lockWait has passed (schema.ErrLocked) or ctx ends, and returns the function
// that releases it. It takes the lock Atlas's driver takes, but not through the driver: its
// wait doubles a delay that overflows after about 45 s and panics (ariga/atlas#3759), and it
// does not end with its context, so a signal would not stop `orderflow migrate` waiting.
func lock(ctx context.Context, conn *sql.Conn, lockWait time.Duration) (unlock func() error, err error) {
	key := lockKey()
	deadline := time.Now().Add(lockWait)
	for {
		// Not cancelled with ctx: a lock granted as ctx ends must be seen, or the connection
		// would go back to the pool holding it. ctx ends the wait between tries.
		var taken bool
		if err := conn.QueryRowContext(context.WithoutCancel(ctx), `SELECT pg_try_advisory_lock($1)`, key).Scan(&taken); err != nil {
			return nil, fmt.Errorf("take migration lock %q: %w", lockName, err)
		}
		if taken {
			break
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, schema.ErrLocked
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for migration lock %q: %w", lockName, ctx.Err())
		case <-time.After(min(lockRetry, wait)):
		}
	}
	// The lock belongs to conn: the unlock must not be cancelled with ctx, or the connection
	// would go back to the pool still holding it.
	return func() error {
		var released bool
		if err := conn.QueryRowContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key).Scan(&released); err != nil {
			return err
		}
		if !released {
			return fmt.Errorf("migration lock %q was not held", lockName)
		}
		return nil
	}, nil
}

// lockHeld describes in one line the migration lock that another process held for longer
// than wait (err): what happened, what to do, and the query that finds the session holding
// it. The lock is the advisory lock keyed by lockKey, which pg_locks shows as its objid.
func lockHeld(ctx context.Context, conn *sql.Conn, wait time.Duration, err error) error {
	var name string
	if qerr := conn.QueryRowContext(ctx, `SELECT current_database()`).Scan(&name); qerr != nil {
		return fmt.Errorf("take migration lock %q: %w (look up the database name: %v)", lockName, err, qerr)
	}
	return explainedError{
		msg: fmt.Sprintf("another process has been applying migrations to database %s for more than %s, and this one gave up waiting: "+
			"start it again once the other has finished, or find the session that holds the migration lock with "+
			"SELECT pid, application_name, client_addr, backend_start FROM pg_stat_activity WHERE datname = '%s' AND "+
			"pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %d)",
			name, wait, strings.ReplaceAll(name, "'", "''"), lockKey()),
		err: err,
	}
}

// explainedError is an error told for people in msg (a failed migration statement, a
// migration lock held too long), which wraps the error err that caused it for errors.Is and
// errors.As.
type explainedError struct {
	msg string
	err error
}

func (e explainedError) Error() string { return e.msg }
func (e explainedError) Unwrap() error { return e.err }

// logger writes the executor's progress to slog.
type logger struct {
	ctx context.Context
	log *slog.Logger
}

// Log implements migrate.Logger.
func (l logger) Log(e migrate.LogEntry) {
	switch e := e.(type) {
	case migrate.LogFile:
		l.log.DebugContext(l.ctx, "applying migration", "version", e.Version, "description", e.Desc)
	case migrate.LogStmt:
		l.log.DebugContext(l.ctx, "migration statement", "sql", e.SQL)
	case migrate.LogError:
		// Apply returns the failure (failed); the log keeps only the whole statement, which
		// the error shortens.
		l.log.DebugContext(l.ctx, "migration statement failed", "sql", e.SQL, "error", e.Error)
	}
}
