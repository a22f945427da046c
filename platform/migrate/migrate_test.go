package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/schema"
	"github.com/shopspring/decimal"

	"orderflow/internal/testenv"
	"orderflow/migrations"
	"orderflow/platform/migrate"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestApplyToEmptyDatabaseThenNothing(t *testing.T) {
	ctx := context.Background()
	db := open(t, testenv.EmptyDatabase(t).DSN())

	files := embeddedFiles(t)
	n, err := migrate.Apply(ctx, db, quiet)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if n != len(files) {
		t.Fatalf("applied %d files, want %d", n, len(files))
	}
	before := schemaOf(t, db)
	for _, table := range []string{"users", "products", "orders", "order_items", "notifications", "outbox"} {
		if !strings.Contains(before, "public."+table+".") {
			t.Errorf("table %s missing after apply", table)
		}
	}

	n, err = migrate.Apply(ctx, db, quiet)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if n != 0 {
		t.Fatalf("second apply applied %d files, want 0", n)
	}
	if after := schemaOf(t, db); after != before {
		t.Fatalf("second apply changed the schema:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if pending, err := migrate.Pending(ctx, db); err != nil || len(pending) != 0 {
		t.Fatalf("pending after apply = %v, %v; want none", pending, err)
	}
}

func TestRevisionsMatchTheFiles(t *testing.T) {
	ctx := context.Background()
	db := open(t, testenv.EmptyDatabase(t).DSN())
	if _, err := migrate.Apply(ctx, db, quiet); err != nil {
		t.Fatalf("apply: %v", err)
	}
	dir, err := migrate.OpenDir(migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	sum, err := dir.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	files := embeddedFiles(t)
	rows, err := db.QueryContext(ctx, `SELECT version, description, type, applied, total, hash,
  error = '', error_stmt = '', partial_hashes = 'null'::jsonb, operator_version, execution_time
FROM "atlas_schema_revisions"."atlas_schema_revisions" ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var (
			version, desc, hash, operator    string
			typ, applied, total, execTime    int64
			noError, noErrorStmt, nullHashes bool
		)
		if err := rows.Scan(&version, &desc, &typ, &applied, &total, &hash, &noError, &noErrorStmt, &nullHashes, &operator, &execTime); err != nil {
			t.Fatal(err)
		}
		if i >= len(files) {
			t.Fatalf("unexpected revision %s", version)
		}
		f := files[i]
		stmts, err := f.Stmts()
		if err != nil {
			t.Fatal(err)
		}
		wantHash, err := sum.SumByName(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if version != f.Version() || desc != f.Desc() || typ != int64(atlasmigrate.RevisionTypeExecute) ||
			applied != int64(len(stmts)) || total != int64(len(stmts)) || hash != wantHash ||
			!noError || !noErrorStmt || !nullHashes || operator != "orderflow" || execTime <= 0 {
			t.Errorf("revision %d = %s %q type %d applied %d/%d hash %s no error %v no error stmt %v partial-null %v operator %q time %d; want file %s (%d statements, hash %s)",
				i, version, desc, typ, applied, total, hash, noError, noErrorStmt, nullHashes, operator, execTime, f.Name(), len(stmts), wantHash)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(files) {
		t.Fatalf("%d revisions, want %d", i, len(files))
	}
	state, err := migrate.Status(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(state.Applied) != len(files) || len(state.Pending) != 0 {
		t.Fatalf("status = %+v, want %d applied and none pending", state, len(files))
	}
}

func TestSeedProducts(t *testing.T) {
	db := open(t, testenv.Database(t).DSN())
	rows, err := db.Query(`SELECT name, description, price, stock FROM products ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type product struct {
		name, price string
		stock       int
	}
	var got []product
	for rows.Next() {
		var (
			p     product
			desc  sql.NullString
			price decimal.Decimal
		)
		if err := rows.Scan(&p.name, &desc, &price, &p.stock); err != nil {
			t.Fatal(err)
		}
		if !desc.Valid || desc.String == "" {
			t.Errorf("%s has no description", p.name)
		}
		p.price = price.StringFixed(2)
		got = append(got, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []product{{"Sample Product 1", "99.99", 100}, {"Sample Product 2", "149.99", 50}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("products = %+v, want %+v", got, want)
	}
}

func TestTamperedSumIsRejected(t *testing.T) {
	ctx := context.Background()
	db := open(t, testenv.EmptyDatabase(t).DSN())
	tampered := copyFS(t)
	for name, f := range tampered {
		if strings.HasSuffix(name, "_seed_products.sql") {
			f.Data = []byte(strings.Replace(string(f.Data), "99.99", "0.01", 1))
		}
	}
	for _, call := range []struct {
		name string
		run  func() error
	}{
		{"apply", func() error { _, err := migrate.ApplyFS(ctx, db, tampered, quiet); return err }},
		{"pending", func() error { _, err := migrate.PendingFS(ctx, db, tampered); return err }},
	} {
		err := call.run()
		if !errors.Is(err, atlasmigrate.ErrChecksumMismatch) || !strings.Contains(err.Error(), "atlas.sum") {
			t.Errorf("%s with a changed file: err = %v, want a checksum mismatch naming atlas.sum", call.name, err)
		}
	}
	var tables int
	if err := db.QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("%d tables exist after a rejected apply, want 0", tables)
	}
}

func TestEmbeddedSumValidates(t *testing.T) {
	dir, err := migrate.OpenDir(migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := atlasmigrate.Validate(dir); err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
	local, err := atlasmigrate.NewLocalDir("../../migrations")
	if err != nil {
		t.Fatal(err)
	}
	if err := atlasmigrate.Validate(local); err != nil {
		t.Fatalf("migrations directory: %v", err)
	}
}

func TestNewFileIsAppliedAlone(t *testing.T) {
	ctx := context.Background()
	db := open(t, testenv.Database(t).DSN())
	next := withFile(t, copyFS(t), "29991231000000_add_note.sql",
		"CREATE TABLE note (id bigint PRIMARY KEY);\nINSERT INTO note VALUES (1);\n")
	n, err := migrate.ApplyFS(ctx, db, next, quiet)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if n != 1 {
		t.Fatalf("applied %d files, want 1", n)
	}
	var id int
	if err := db.QueryRow(`SELECT id FROM note`).Scan(&id); err != nil || id != 1 {
		t.Fatalf("note row = %d, %v", id, err)
	}
}

func TestFailingFileIsRolledBack(t *testing.T) {
	ctx := context.Background()
	db := open(t, testenv.Database(t).DSN())
	bad := withFile(t, copyFS(t), "29991231000000_broken.sql",
		"CREATE TABLE half (id bigint PRIMARY KEY);\nSELECT 1 / 0;\n")
	n, err := migrate.ApplyFS(ctx, db, bad, quiet)
	if err == nil || !strings.Contains(err.Error(), "29991231000000_broken.sql") {
		t.Fatalf("apply of a failing file: n %d, err %v; want an error naming the file", n, err)
	}
	var exists bool
	if err := db.QueryRow(`SELECT to_regclass('half') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("table of the failed file exists: the file was not rolled back")
	}
	var revs int
	if err := db.QueryRow(`SELECT count(*) FROM "atlas_schema_revisions"."atlas_schema_revisions" WHERE version = '29991231000000'`).Scan(&revs); err != nil {
		t.Fatal(err)
	}
	if revs != 0 {
		t.Fatalf("%d revisions recorded for the failed file, want 0", revs)
	}
	pending, err := migrate.PendingFS(ctx, db, bad)
	if err != nil || len(pending) != 1 || pending[0] != "29991231000000_broken.sql" {
		t.Fatalf("pending = %v, %v; want the failed file", pending, err)
	}
}

func TestConcurrentApplyAppliesOnce(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.EmptyDatabase(t)
	const processes = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		errs  []error
	)
	for range processes {
		db := open(t, cfg.DSN()) // one pool each, like separate API processes
		wg.Go(func() {
			n, err := migrate.Apply(ctx, db, quiet)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent apply: %v", errors.Join(errs...))
	}
	if want := len(embeddedFiles(t)); total != want {
		t.Fatalf("%d files applied in total, want %d", total, want)
	}
}

// TestApplyGivesUpOnAMigrationLockHeldLong: when another process (an api applying a long
// migration, orderflow migrate, atlas migrate apply) holds the migration lock for longer than
// Apply waits for it, Apply gives up with one line that says so, says what to do, and gives
// the query that finds the session holding the lock.
func TestApplyGivesUpOnAMigrationLockHeldLong(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.EmptyDatabase(t)
	// The lock of atlas migrate apply is the advisory lock keyed by the 32-bit FNV-1 hash
	// of its name.
	key := fnv.New32()
	key.Write([]byte("atlas_migrate_execute"))
	other, err := open(t, cfg.DSN()).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var holder int
	if err := other.QueryRowContext(ctx, `SELECT pg_backend_pid() FROM pg_advisory_lock($1)`, int64(key.Sum32())).Scan(&holder); err != nil {
		t.Fatalf("take the migration lock: %v", err)
	}

	db := open(t, cfg.DSN())
	_, err = migrate.ApplyFSWaiting(ctx, db, migrations.FS, quiet, 2*time.Second)
	if err == nil {
		t.Fatal("apply while another session held the migration lock succeeded")
	}
	msg := err.Error()
	const want = "another process has been applying migrations to database %s for more than 2s, and this one gave up waiting: " +
		"start it again once the other has finished, or find the session that holds the migration lock with SELECT "
	if !strings.HasPrefix(msg, fmt.Sprintf(want, cfg.Name)) || strings.Contains(msg, "\n") {
		t.Fatalf("apply while another session held the migration lock = %q\nwant one line starting %q", msg, fmt.Sprintf(want, cfg.Name))
	}
	if !errors.Is(err, schema.ErrLocked) {
		t.Errorf("apply = %v, which is not schema.ErrLocked", err)
	}
	var found int
	query := msg[strings.Index(msg, "SELECT "):]
	if err := db.QueryRowContext(ctx, `SELECT pid FROM (`+query+`) AS holders`).Scan(&found); err != nil || found != holder {
		t.Errorf("%s = %d, %v; want the session that holds the lock, %d", query, found, err, holder)
	}
	if n, err := migrate.Pending(ctx, db); err != nil || len(n) != len(embeddedFiles(t)) {
		t.Errorf("pending after apply gave up = %d files, %v; want all %d", len(n), err, len(embeddedFiles(t)))
	}
}

// TestApplyStopsWaitingForTheLockWithItsContext: a signal ends the wait of `orderflow
// migrate` for another process's migration lock at once, not at the end of the wait.
func TestApplyStopsWaitingForTheLockWithItsContext(t *testing.T) {
	cfg := testenv.EmptyDatabase(t)
	key := fnv.New32()
	key.Write([]byte("atlas_migrate_execute"))
	other, err := open(t, cfg.DSN()).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(context.Background(), `SELECT pg_advisory_lock($1)`, int64(key.Sum32())); err != nil {
		t.Fatalf("take the migration lock: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err = migrate.ApplyFSWaiting(ctx, open(t, cfg.DSN()), migrations.FS, quiet, time.Minute)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 10*time.Second {
		t.Errorf("apply waiting for the lock with a context of 1 s = %v after %v; want the context's error at once", err, took.Round(time.Millisecond))
	}
}

// schemaOf describes the tables, columns, constraints and indexes of the public schema.
func schemaOf(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`
SELECT 'public.' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		b.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// embeddedFiles returns the embedded migration files in order.
func embeddedFiles(t *testing.T) []atlasmigrate.File {
	t.Helper()
	dir, err := migrate.OpenDir(migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	files, err := dir.Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("%d embedded migrations, want the initial schema and the seed", len(files))
	}
	return files
}

// copyFS copies the embedded migrations into a map that a test may change.
func copyFS(t *testing.T) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(migrations.FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, name)
		out[name] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withFile adds a migration file to fsys and rehashes atlas.sum, as migrationgen -rehash does.
func withFile(t *testing.T, fsys fstest.MapFS, name, body string) fstest.MapFS {
	t.Helper()
	fsys[name] = &fstest.MapFile{Data: []byte(body)}
	return rehash(t, fsys)
}

// withoutFile removes a migration file from fsys and rehashes atlas.sum: the directory of
// the version before the one that added the file.
func withoutFile(t *testing.T, fsys fstest.MapFS, name string) fstest.MapFS {
	t.Helper()
	if _, ok := fsys[name]; !ok {
		t.Fatalf("no migration %s to remove", name)
	}
	delete(fsys, name)
	return rehash(t, fsys)
}

// rehash rewrites the atlas.sum of fsys for its files.
func rehash(t *testing.T, fsys fstest.MapFS) fstest.MapFS {
	t.Helper()
	dir, err := migrate.OpenDir(fsys)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	sum, err := dir.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	b, err := sum.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	fsys[atlasmigrate.HashFileName] = &fstest.MapFile{Data: b}
	return fsys
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestDatabaseAheadOfTheFilesIsReported: a database that a newer orderflow migrated (a
// rollback of the binary) has nothing pending, and the apply says so in a warning that
// names the migrations it does not know, instead of passing for up to date.
func TestDatabaseAheadOfTheFilesIsReported(t *testing.T) {
	ctx := context.Background()
	db := open(t, testenv.Database(t).DSN())
	newer := withFile(t, copyFS(t), "29991231000000_add_note.sql", "CREATE TABLE note (id bigint PRIMARY KEY);\n")
	if _, err := migrate.ApplyFS(ctx, db, newer, quiet); err != nil {
		t.Fatalf("apply the newer files: %v", err)
	}
	var logged strings.Builder
	n, err := migrate.Apply(ctx, db, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil || n != 0 {
		t.Fatalf("apply the older files: %d, %v; want 0 applied and no error", n, err)
	}
	if out := logged.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "29991231000000") {
		t.Errorf("log = %q, want a warning naming version 29991231000000", out)
	}
}

// TestDatabaseOfSomethingElseIsRefused: a database that holds tables but no migration
// history is left alone, with an error that says so in orderflow's terms (Atlas's own
// message asks for flags that orderflow has not).
func TestDatabaseOfSomethingElseIsRefused(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.EmptyDatabase(t)
	db := open(t, cfg.DSN())
	if _, err := db.ExecContext(ctx, `CREATE TABLE someone_elses (id int)`); err != nil {
		t.Fatal(err)
	}
	n, err := migrate.Apply(ctx, db, quiet)
	if err == nil || n != 0 {
		t.Fatalf("apply = %d, %v; want an error", n, err)
	}
	for _, want := range []string{"is not empty but has no migration history", "database.name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "allow-dirty") {
		t.Errorf("error %q asks for an Atlas flag", err)
	}
	var revisions bool
	if err := db.QueryRow(`SELECT to_regclass('"atlas_schema_revisions"."atlas_schema_revisions"') IS NOT NULL`).Scan(&revisions); err != nil {
		t.Fatal(err)
	}
	if revisions {
		t.Error("the refused database got a revisions table")
	}
}

// TestDatabaseOfSomethingElseIsRefusedAgain: an earlier version created the revisions table
// before it refused such a database; with that empty table, the database is refused alike.
func TestDatabaseOfSomethingElseIsRefusedAgain(t *testing.T) {
	ctx := context.Background()
	db := open(t, testenv.EmptyDatabase(t).DSN())
	for _, stmt := range []string{
		`CREATE TABLE someone_elses (id int)`,
		`CREATE SCHEMA atlas_schema_revisions`,
		// The Atlas CLI's table, as platform/migrate creates it.
		`CREATE TABLE atlas_schema_revisions.atlas_schema_revisions (
			version character varying NOT NULL PRIMARY KEY, description character varying NOT NULL,
			type bigint NOT NULL DEFAULT 2, applied bigint NOT NULL DEFAULT 0, total bigint NOT NULL DEFAULT 0,
			executed_at timestamptz NOT NULL, execution_time bigint NOT NULL, error text NULL, error_stmt text NULL,
			hash character varying NOT NULL, partial_hashes jsonb NULL, operator_version character varying NOT NULL)`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	_, err := migrate.Apply(ctx, db, quiet)
	if err == nil || !strings.Contains(err.Error(), "is not empty but has no migration history") {
		t.Fatalf("apply = %v, want the database refused as not empty", err)
	}
}

// TestRequire: the check the worker and the cron job run at start-up refuses a database that
// lacks embedded migrations, naming them and what to do, without writing anything to it, and
// accepts one that has every migration, or more: those of a newer version, with the warning
// Apply gives.
func TestRequire(t *testing.T) {
	ctx := context.Background()
	files := embeddedFiles(t)
	last := files[len(files)-1].Name()
	const todo = `: start the api or run "orderflow migrate" first`

	t.Run("empty database", func(t *testing.T) {
		t.Parallel()
		cfg := testenv.EmptyDatabase(t)
		db := open(t, cfg.DSN())
		err := migrate.Require(ctx, db, quiet)
		want := fmt.Sprintf("database %s lacks %d migrations this version needs (%s, ", cfg.Name, len(files), files[0].Name())
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), todo) {
			t.Fatalf("require = %v, want an error starting %q and ending %q", err, want, todo)
		}
		var schemas, tables int
		if err := db.QueryRow(`SELECT
  (SELECT count(*) FROM pg_namespace WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\_%'),
  (SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))`).Scan(&schemas, &tables); err != nil {
			t.Fatal(err)
		}
		if schemas != 0 || tables != 0 {
			t.Errorf("the check left %d schemas and %d tables in an empty database, want none", schemas, tables)
		}
	})

	t.Run("all but the last migration", func(t *testing.T) {
		t.Parallel()
		cfg := testenv.EmptyDatabase(t)
		db := open(t, cfg.DSN())
		if _, err := migrate.ApplyFS(ctx, db, withoutFile(t, copyFS(t), last), quiet); err != nil {
			t.Fatalf("apply the previous version's files: %v", err)
		}
		err := migrate.Require(ctx, db, quiet)
		want := fmt.Sprintf("database %s lacks 1 migration this version needs (%s)%s", cfg.Name, last, todo)
		if err == nil || err.Error() != want {
			t.Fatalf("require = %v\nwant %s", err, want)
		}
	})

	t.Run("every migration", func(t *testing.T) {
		t.Parallel()
		if err := migrate.Require(ctx, open(t, testenv.Database(t).DSN()), quiet); err != nil {
			t.Fatalf("require on a migrated database: %v", err)
		}
	})

	t.Run("a newer version's migration too", func(t *testing.T) {
		t.Parallel()
		db := open(t, testenv.Database(t).DSN())
		newer := withFile(t, copyFS(t), "29991231000000_add_note.sql", "CREATE TABLE note (id bigint PRIMARY KEY);\n")
		if _, err := migrate.ApplyFS(ctx, db, newer, quiet); err != nil {
			t.Fatalf("apply the newer files: %v", err)
		}
		var logged strings.Builder
		if err := migrate.Require(ctx, db, slog.New(slog.NewTextHandler(&logged, nil))); err != nil {
			t.Fatalf("require on a database a newer version migrated: %v", err)
		}
		if out := logged.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "29991231000000") {
			t.Errorf("log = %q, want a warning naming version 29991231000000", out)
		}
	})
}
