// Command migrationgen writes orderflow's versioned migrations from ent/schema.
//
// It replays migrations/ on an empty scratch database, diffs the result against the ent
// schema and writes the difference as a new Atlas migration file plus a new atlas.sum. It
// reads the schema as generated into ent/migrate, so run go generate ./... after changing
// ent/schema (make migration name=<name> does both):
//
//	go run ./cmd/migrationgen <name>     write <timestamp>_<name>.sql when the schema changed
//	go run ./cmd/migrationgen -check     fail if the schema and the migrations disagree
//	go run ./cmd/migrationgen -new <name> create an empty hand-written migration and rehash
//	go run ./cmd/migrationgen -rehash    recompute atlas.sum after editing a migration by hand
//
// A named CHECK or a foreign key added to an existing table is written NOT VALID, and
// validated in a second file, <name>_validate, so that neither file scans a table under a
// lock that blocks its writes (migrations/README.md).
//
// The scratch database is created on the server of -admin-dsn (or ORDERFLOW_MIGRATIONGEN_DSN)
// under a random name and dropped afterwards.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/dialect/sql/schema"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	entmigrate "orderflow/ent/migrate"
)

// defaultAdminDSN is the server on which scratch databases are created.
const defaultAdminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// validName is what a migration name may contain; it becomes part of a file name.
var validName = regexp.MustCompile(`^[a-z0-9_]+$`)

func main() {
	adminDSN := flag.String("admin-dsn", envOr("ORDERFLOW_MIGRATIONGEN_DSN", defaultAdminDSN),
		"PostgreSQL URL of a database on the server where the scratch database is created (env ORDERFLOW_MIGRATIONGEN_DSN)")
	dirPath := flag.String("dir", "migrations", "migration directory")
	check := flag.Bool("check", false, "write nothing; fail if the schema has changes without a migration")
	newName := flag.String("new", "", "create an empty migration `name` for hand-written SQL and rehash atlas.sum")
	rehash := flag.Bool("rehash", false, "recompute atlas.sum from the migration files")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: migrationgen [flags] <name> | -check | -new <name> | -rehash\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	// An interrupt cancels the diff; the scratch database is still dropped.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var err error
	switch {
	case *check:
		err = Check(ctx, *adminDSN, *dirPath)
		if err == nil {
			fmt.Println("migrations agree with ent/schema")
		}
	case *rehash:
		err = Rehash(*dirPath)
	case *newName != "":
		var file string
		file, err = New(*dirPath, *newName)
		if err == nil {
			fmt.Println("created", file)
		}
	case flag.NArg() == 1:
		var g Generated
		g, err = Generate(ctx, *adminDSN, *dirPath, flag.Arg(0))
		if err == nil {
			report(os.Stdout, g)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrationgen:", err)
		os.Exit(1)
	}
}

// report tells what Generate wrote.
func report(w io.Writer, g Generated) {
	if len(g.Files) == 0 {
		// The diff reads ent/schema as last generated into ent/migrate, and sees only what
		// PostgreSQL holds. A CHECK changed under its old name does not get here: Generate
		// fails on it, naming it.
		fmt.Fprintln(w, "no schema changes: nothing written. The schema is read from ent/migrate as go generate ./... last wrote it: if ent/schema changed since, run it and try again (make migration name=<name> runs both). Otherwise the change is one PostgreSQL does not hold, such as an ent validator (MaxRuneLen, NonNegative): if the database must refuse the same values, state it as a CHECK of a new name in entsql.Checks too.")
	}
	for _, f := range g.Files {
		fmt.Fprintln(w, "wrote", f)
	}
	if len(g.NotValid) > 0 {
		fmt.Fprintf(w, "added NOT VALID in %s, and validated in %s, so that neither file scans a table under a lock that blocks its writes: %s\n",
			filepath.Base(g.Files[0]), filepath.Base(g.Files[1]), joined(g.NotValid))
	}
}

// joined lists constraints for a message.
func joined(cs []constraint) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.String()
	}
	return strings.Join(names, ", ")
}

// Generated is what Generate wrote.
type Generated struct {
	// Files are the new migration files, in order, then atlas.sum; none without a change.
	Files []string
	// NotValid are the CHECKs and foreign keys that the first file adds NOT VALID to
	// existing tables and the second (<name>_validate) validates.
	NotValid []constraint
}

// Generate writes a migration named name to dirPath if ent/schema differs from the state
// the directory builds, and returns what it wrote (nothing when there is no change). A
// CHECK or foreign key added to an existing table is added NOT VALID, and validated in a
// second file, <name>_validate.
func Generate(ctx context.Context, adminDSN, dirPath, name string) (Generated, error) {
	if !validName.MatchString(name) {
		return Generated{}, fmt.Errorf("migration name %q: use lower-case letters, digits and _", name)
	}
	dir, err := migrate.NewLocalDir(dirPath)
	if err != nil {
		return Generated{}, fmt.Errorf("open migration directory: %w", err)
	}
	if err := validateSum(dirPath, dir); err != nil {
		return Generated{}, err
	}
	// A CHECK changed under its old name makes no diff: refuse to write a migration that
	// lacks it, or to report that nothing changed.
	if err := checkConstraints(ctx, adminDSN, dirPath); err != nil {
		return Generated{}, err
	}
	before, err := fileSet(dir)
	if err != nil {
		return Generated{}, err
	}
	var g Generated
	if err := diff(ctx, adminDSN, dir, name, false, &g.NotValid); err != nil {
		return Generated{}, err
	}
	after, err := fileSet(dir)
	if err != nil {
		return Generated{}, err
	}
	var written []string
	for f := range after {
		if _, ok := before[f]; !ok {
			written = append(written, f)
		}
	}
	if len(written) == 0 {
		return Generated{}, nil
	}
	if len(written) != 1 {
		return Generated{}, fmt.Errorf("the diff wrote %d files, %v; want one", len(written), written)
	}
	g.Files = []string{filepath.Join(dirPath, written[0])}
	if len(g.NotValid) > 0 {
		file, err := writeValidation(dir, dirPath, written[0], name, g.NotValid)
		if err != nil {
			return Generated{}, err
		}
		if err := Rehash(dirPath); err != nil {
			return Generated{}, err
		}
		g.Files = append(g.Files, file)
	}
	g.Files = append(g.Files, filepath.Join(dirPath, migrate.HashFileName))
	return g, nil
}

// Check fails when ent/schema has changes that no migration in dirPath covers, or when
// atlas.sum does not match the files. It writes nothing: the diff runs on an in-memory copy.
func Check(ctx context.Context, adminDSN, dirPath string) error {
	local, err := migrate.NewLocalDir(dirPath)
	if err != nil {
		return fmt.Errorf("open migration directory: %w", err)
	}
	if err := validateSum(dirPath, local); err != nil {
		return err
	}
	files, err := local.Files()
	if err != nil {
		return fmt.Errorf("read migrations: %w", err)
	}
	mem := migrate.OpenMemDir("migrationgen-check-" + randomSuffix())
	defer mem.Close()
	if err := mem.CopyFiles(files); err != nil {
		return fmt.Errorf("copy migrations: %w", err)
	}
	sum, err := local.Checksum()
	if err != nil {
		return fmt.Errorf("hash migrations: %w", err)
	}
	if err := migrate.WriteSumFile(mem, sum); err != nil {
		return fmt.Errorf("copy atlas.sum: %w", err)
	}
	err = diff(ctx, adminDSN, mem, "check", true, nil)
	switch {
	case errors.Is(err, migrate.ErrNoPlan):
		return checkConstraints(ctx, adminDSN, dirPath)
	case err != nil:
		return err
	default:
		return errors.New("ent/schema has changes that no migration covers: run go run ./cmd/migrationgen <name> and commit the new files")
	}
}

// validateSum fails when atlas.sum does not match the files of dir, saying how to fix it.
func validateSum(dirPath string, dir migrate.Dir) error {
	if err := migrate.Validate(dir); err != nil {
		return fmt.Errorf("%s: %w: atlas.sum is missing or does not match the migration files; if the change is meant (a migration not yet applied anywhere edited, or migrations of two branches merged), run: go run ./cmd/migrationgen -rehash", dirPath, err)
	}
	return nil
}

// New creates an empty migration file named name for hand-written SQL and rehashes the
// directory. It returns the path of the new file.
func New(dirPath, name string) (string, error) {
	if !validName.MatchString(name) {
		return "", fmt.Errorf("migration name %q: use lower-case letters, digits and _", name)
	}
	dir, err := migrate.NewLocalDir(dirPath)
	if err != nil {
		return "", fmt.Errorf("open migration directory: %w", err)
	}
	file := fmt.Sprintf("%s_%s.sql", migrate.NewVersion(), name)
	body := fmt.Sprintf("-- %s: hand-written SQL. After editing, run: go run ./cmd/migrationgen -rehash\n", name)
	if err := dir.WriteFile(file, []byte(body)); err != nil {
		return "", fmt.Errorf("write %s: %w", file, err)
	}
	if err := Rehash(dirPath); err != nil {
		return "", err
	}
	return filepath.Join(dirPath, file), nil
}

// Rehash recomputes atlas.sum from the migration files in dirPath.
func Rehash(dirPath string) error {
	dir, err := migrate.NewLocalDir(dirPath)
	if err != nil {
		return fmt.Errorf("open migration directory: %w", err)
	}
	sum, err := dir.Checksum()
	if err != nil {
		return fmt.Errorf("hash migrations: %w", err)
	}
	if err := migrate.WriteSumFile(dir, sum); err != nil {
		return fmt.Errorf("write atlas.sum: %w", err)
	}
	return nil
}

// diff replays dir on a fresh scratch database and writes the difference to ent/schema
// into dir. With errNoPlan, an empty difference is reported as migrate.ErrNoPlan. With
// notValid, a CHECK or foreign key added to an existing table is written NOT VALID and
// recorded in notValid (deferValidation).
func diff(ctx context.Context, adminDSN string, dir migrate.Dir, name string, errNoPlan bool, notValid *[]constraint) (err error) {
	db, drop, err := scratchDatabase(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer func() {
		db.Close()
		if derr := drop(); derr != nil && err == nil {
			err = derr
		}
	}()
	opts := []schema.MigrateOption{
		schema.WithDir(dir),
		schema.WithMigrationMode(schema.ModeReplay),
		schema.WithDialect(dialect.Postgres),
		schema.WithFormatter(migrate.DefaultFormatter),
		schema.WithDropColumn(true),
		schema.WithDropIndex(true),
	}
	if errNoPlan {
		opts = append(opts, schema.WithErrNoPlan(true))
	}
	if notValid != nil {
		opts = append(opts, schema.WithDiffHook(deferValidation(notValid)))
	}
	err = entmigrate.NewSchema(entsql.OpenDB(dialect.Postgres, db)).NamedDiff(ctx, name, opts...)
	if err != nil && !errors.Is(err, migrate.ErrNoPlan) {
		return fmt.Errorf("diff ent/schema against the migrations: %w", err)
	}
	return err
}

// scratchDatabase creates an empty database with a random name on the server of adminDSN,
// opens it, and returns a function that drops it.
func scratchDatabase(ctx context.Context, adminDSN string) (*sql.DB, func() error, error) {
	admin, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return nil, nil, fmt.Errorf("open admin database: %w", err)
	}
	name := "migrationgen_" + randomSuffix()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return nil, nil, fmt.Errorf("create a scratch database on %s: %w (migrationgen needs a PostgreSQL server on which it may create databases: start one, see the README's Prerequisites, or name another with -admin-dsn or ORDERFLOW_MIGRATIONGEN_DSN)",
			redacted(adminDSN), err)
	}
	drop := func() error {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop scratch database %s: %w", name, err)
		}
		return nil
	}
	u, err := url.Parse(adminDSN)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("parse admin DSN: %w", err), drop())
	}
	u.Path = "/" + name
	db, err := sql.Open("pgx", u.String())
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("connect to scratch database: %w", err), drop())
	}
	return db, drop, nil
}

// fileSet lists the names of the migration files in dir.
func fileSet(dir migrate.Dir) (map[string]struct{}, error) {
	files, err := dir.Files()
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	set := make(map[string]struct{}, len(files))
	for _, f := range files {
		set[f.Name()] = struct{}{}
	}
	return set, nil
}

// redacted is dsn without its password, for messages.
func redacted(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "the server of -admin-dsn"
	}
	return u.Redacted()
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
