// Package testenv gives integration tests their own, fully migrated PostgreSQL database and
// their own RabbitMQ exchange name, on the servers named by environment variables:
//
//	ORDERFLOW_TEST_DATABASE_HOST      default 127.0.0.1
//	ORDERFLOW_TEST_DATABASE_PORT      default 5432
//	ORDERFLOW_TEST_DATABASE_USER      default postgres
//	ORDERFLOW_TEST_DATABASE_PASSWORD  default empty
//	ORDERFLOW_TEST_RABBITMQ_HOST      default 127.0.0.1:5672 (guest/guest)
//	ORDERFLOW_TEST_LOG                log level of Config, default warn
//
// Migrations are applied once to a template database named after a hash of the embedded
// migration files; each test database is a copy of it (CREATE DATABASE ... TEMPLATE).
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"orderflow/configuration"
	"orderflow/migrations"
	"orderflow/platform/db"
	"orderflow/platform/migrate"
)

// maxConns keeps each test's pool small: many test databases share one server.
const maxConns = 8

var (
	adminOnce sync.Once
	adminDB   *sql.DB
	adminErr  error

	templateMu    sync.Mutex
	templateReady string // name of the template database once it exists
)

// Database returns the settings of a fresh, fully migrated database for one test (or test
// package), dropped when the test ends (t.Cleanup). Fast: migrations are applied once to a
// template database (named after a hash of the embedded migration files, created under a
// pg advisory lock so parallel test binaries don't race), then CREATE DATABASE ... TEMPLATE.
func Database(t testing.TB) configuration.Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := adminConn()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	tpl, err := ensureTemplate(ctx, admin)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	name := testDatabaseName()
	if err := createFromTemplate(ctx, admin, name, tpl); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dropAtCleanup(t, admin, name)
	cfg := server()
	cfg.Name = name
	return cfg
}

// EmptyDatabase returns the settings of a new database without any table, dropped when
// the test ends: for tests of migrating itself.
func EmptyDatabase(t testing.TB) configuration.Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := adminConn()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	name := testDatabaseName()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("testenv: create empty database: %v", err)
	}
	dropAtCleanup(t, admin, name)
	cfg := server()
	cfg.Name = name
	return cfg
}

// dropAtCleanup drops database name when t ends, closing any connection left to it.
func dropAtCleanup(t testing.TB, admin *sql.DB, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			t.Errorf("testenv: drop test database %s: %v", name, err)
		}
	})
}

// Pool opens a pool on the database d, as the processes do (db.Open), and closes it when the
// test ends.
func Pool(t testing.TB, d configuration.Database) *sql.DB {
	t.Helper()
	pool, err := db.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	return pool
}

// Config returns configuration.Defaults() filled for tests: the fresh Database(t), the
// test RabbitMQ (see the package doc) with a unique exchange name Exchange(t), a 32+ byte JWT
// secret, admin credentials, short timings (paymentDelay 200ms, expiryInterval 1s,
// outbox pollInterval 100ms, shutdownTimeout 5s), log level from ORDERFLOW_TEST_LOG or warn,
// http.address "127.0.0.1:0".
func Config(t testing.TB) *configuration.Config {
	t.Helper()
	cfg := configuration.Defaults()
	cfg.Database = Database(t)

	host, portText, err := net.SplitHostPort(env("ORDERFLOW_TEST_RABBITMQ_HOST", "127.0.0.1:5672"))
	if err != nil {
		t.Fatalf("testenv: ORDERFLOW_TEST_RABBITMQ_HOST: %v", err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatalf("testenv: ORDERFLOW_TEST_RABBITMQ_HOST: port %q: %v", portText, err)
	}
	cfg.RabbitMQ.Host = host
	cfg.RabbitMQ.Port = port
	cfg.RabbitMQ.User = "guest"
	cfg.RabbitMQ.Password = "guest"
	cfg.RabbitMQ.Exchange = Exchange(t)
	deleteBrokerNames(t, cfg.RabbitMQ)

	cfg.Auth.JWTSecret = "orderflow-test-jwt-secret-0123456789abcdef"
	cfg.Admin = configuration.Admin{
		Name:     "Administrator",
		Email:    "admin@orderprocessing.local",
		Password: "Admin@12345",
	}
	cfg.HTTP.Address = "127.0.0.1:0"
	cfg.HTTP.ShutdownTimeout = configuration.Duration(5 * time.Second)
	cfg.Orders.PaymentDelay = configuration.Duration(200 * time.Millisecond)
	cfg.Orders.ExpiryInterval = configuration.Duration(time.Second)
	cfg.Outbox.PollInterval = configuration.Duration(100 * time.Millisecond)
	cfg.Log.Level = env("ORDERFLOW_TEST_LOG", "warn")
	cfg.Log.Format = "text"
	return &cfg
}

// Exchange returns a unique exchange name for one test, e.g. "test.<random>.events".
func Exchange(t testing.TB) string {
	t.Helper()
	return "test." + randomHex(6) + ".events"
}

// server returns the settings of the test server, without a database name.
func server() configuration.Database {
	port, err := strconv.Atoi(env("ORDERFLOW_TEST_DATABASE_PORT", "5432"))
	if err != nil {
		port = -1 // makes every connection fail with a message naming the port
	}
	return configuration.Database{
		Host:     env("ORDERFLOW_TEST_DATABASE_HOST", "127.0.0.1"),
		Port:     port,
		User:     env("ORDERFLOW_TEST_DATABASE_USER", "postgres"),
		Password: os.Getenv("ORDERFLOW_TEST_DATABASE_PASSWORD"),
		SSLMode:  "disable",
		MaxConns: maxConns,
	}
}

// testPrefix starts the name of every test database, followed by its creation time in Unix
// seconds and a random part.
const testPrefix = "orderflow_test_"

// staleAfter is the age at which a test database is certainly left over from a test binary
// that died before its clean-up ran.
const staleAfter = time.Hour

func testDatabaseName() string {
	return fmt.Sprintf("%s%d_%s", testPrefix, time.Now().Unix(), randomHex(6))
}

// buildInfix follows the template's name in the name of the database a template is migrated
// in, followed by its creation time in Unix seconds and a random part.
const buildInfix = "_build_"

// created returns the creation time of a test database, or of a template database being
// built, from its name.
func created(name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, testPrefix)
	if !ok {
		_, rest, ok = strings.Cut(name, buildInfix)
	}
	unix, _, cut := strings.Cut(rest, "_")
	sec, err := strconv.ParseInt(unix, 10, 64)
	if !ok || !cut || err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// dropStale drops test databases, and template databases half built, that dead test
// binaries left behind.
func dropStale(ctx context.Context, admin *sql.DB) error {
	rows, err := admin.QueryContext(ctx, `SELECT datname FROM pg_database
		WHERE datname LIKE 'orderflow\_test\_%' OR datname LIKE 'orderflow\_tpl\_%\_build\_%'`)
	if err != nil {
		return fmt.Errorf("list test databases: %w", err)
	}
	var stale []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("list test databases: %w", err)
		}
		if at, ok := created(name); ok && time.Since(at) > staleAfter {
			stale = append(stale, name)
		}
	}
	rows.Close()
	for _, name := range stale {
		if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`); err != nil {
			return fmt.Errorf("drop stale test database %s: %w", name, err)
		}
	}
	return nil
}

// adminConn opens (once per test binary) a small pool on the server's postgres database
// and drops test databases that dead test binaries left behind.
func adminConn() (*sql.DB, error) {
	adminOnce.Do(func() {
		cfg := server()
		cfg.Name = "postgres"
		adminDB, adminErr = sql.Open("pgx", cfg.DSN())
		if adminErr != nil {
			adminErr = fmt.Errorf("open admin database: %w", adminErr)
			return
		}
		adminDB.SetMaxOpenConns(4)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := adminDB.PingContext(ctx); err != nil {
			adminErr = fmt.Errorf("connect to PostgreSQL at %s:%d as %s: %w", cfg.Host, cfg.Port, cfg.User, err)
			return
		}
		adminErr = dropStale(ctx, adminDB)
	})
	return adminDB, adminErr
}

// ensureTemplate returns the name of the template database of the embedded migrations,
// building it first if no test binary has built it yet.
func ensureTemplate(ctx context.Context, admin *sql.DB) (string, error) {
	templateMu.Lock()
	defer templateMu.Unlock()
	if templateReady != "" {
		return templateReady, nil
	}
	hash, err := migrationsHash()
	if err != nil {
		return "", err
	}
	tpl := "orderflow_tpl_" + hash
	conn, err := admin.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("admin connection: %w", err)
	}
	defer conn.Close()
	// The lock is held by this session; closing conn returns it to the pool, so unlock explicitly.
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(hashtext('orderflow_testenv_template'))`); err != nil {
		return "", fmt.Errorf("lock template creation: %w", err)
	}
	defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(hashtext('orderflow_testenv_template'))`)

	var exists bool
	if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, tpl).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up template database: %w", err)
	}
	if !exists {
		if err := buildTemplate(ctx, conn, tpl); err != nil {
			return "", err
		}
	}
	templateReady = tpl
	return tpl, nil
}

// buildTemplate migrates a new database and renames it to tpl, so that a template database
// that exists is always complete.
func buildTemplate(ctx context.Context, conn *sql.Conn, tpl string) error {
	build := fmt.Sprintf("%s%s%d_%s", tpl, buildInfix, time.Now().Unix(), randomHex(4))
	if _, err := conn.ExecContext(ctx, `CREATE DATABASE "`+build+`"`); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	cfg := server()
	cfg.Name = build
	db, err := sql.Open("pgx", cfg.DSN())
	if err != nil {
		return fmt.Errorf("open template database: %w", err)
	}
	_, err = migrate.Apply(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	db.Close()
	if err != nil {
		_, _ = conn.ExecContext(context.Background(), `DROP DATABASE IF EXISTS "`+build+`" WITH (FORCE)`)
		return fmt.Errorf("migrate template database: %w", err)
	}
	for _, stmt := range []string{
		`ALTER DATABASE "` + build + `" RENAME TO "` + tpl + `"`,
		`ALTER DATABASE "` + tpl + `" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`,
	} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("finish template database: %w", err)
		}
	}
	return nil
}

// createFromTemplate copies tpl to a new database name. Copies of one template may not
// start while a session is connected to it, so a busy template is retried briefly.
func createFromTemplate(ctx context.Context, admin *sql.DB, name, tpl string) error {
	for attempt := 0; ; attempt++ {
		_, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`" TEMPLATE "`+tpl+`"`)
		var pgErr *pgconn.PgError
		if err == nil {
			return nil
		}
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt == 50 {
			return fmt.Errorf("create test database from %s: %w", tpl, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create test database from %s: %w", tpl, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// migrationsHash identifies the embedded migration files: a change to any of them gives
// a new template database.
func migrationsHash() (string, error) {
	names, err := fs.Glob(migrations.FS, "*")
	if err != nil {
		return "", fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		b, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return "", fmt.Errorf("read migration %s: %w", name, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
