package main

import (
	"context"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"ariga.io/atlas/sql/migrate"
	entschema "entgo.io/ent/dialect/sql/schema"

	entmigrate "orderflow/ent/migrate"
)

const repoMigrations = "../../migrations"

func adminDSN() string { return envOr("ORDERFLOW_MIGRATIONGEN_DSN", defaultAdminDSN) }

func TestCheckPassesOnTheRepository(t *testing.T) {
	before := snapshot(t, repoMigrations)
	if err := Check(ctx(t), adminDSN(), repoMigrations); err != nil {
		t.Fatalf("ent/schema and migrations/ disagree: %v", err)
	}
	if after := snapshot(t, repoMigrations); !equal(before, after) {
		t.Fatal("check changed migrations/")
	}
}

func TestCheckFailsWhenAMigrationIsMissing(t *testing.T) {
	dir := copyDir(t, repoMigrations)
	// Drop the last statement of the initial migration, an index ent/schema declares.
	initial := only(t, dir, "*_initial.sql")
	b, err := os.ReadFile(initial)
	if err != nil {
		t.Fatal(err)
	}
	const index = `CREATE INDEX "orderitem_product_id"`
	i := strings.Index(string(b), "-- Create index \"orderitem_product_id\"")
	if i < 0 || !strings.Contains(string(b[i:]), index) {
		t.Fatalf("%s has no %s to remove", initial, index)
	}
	if err := os.WriteFile(initial, b[:i], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Rehash(dir); err != nil {
		t.Fatal(err)
	}

	before := snapshot(t, dir)
	err = Check(ctx(t), adminDSN(), dir)
	if err == nil || !strings.Contains(err.Error(), "no migration covers") {
		t.Fatalf("check = %v, want an error saying a migration is missing", err)
	}
	if after := snapshot(t, dir); !equal(before, after) {
		t.Fatal("check left files behind")
	}

	g, err := Generate(ctx(t), adminDSN(), dir, "restore_index")
	written := g.Files
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if len(written) != 2 || !strings.HasSuffix(written[0], "_restore_index.sql") {
		t.Fatalf("generate wrote %v, want the new migration and atlas.sum", written)
	}
	got, err := os.ReadFile(written[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), index) {
		t.Fatalf("new migration lacks %s:\n%s", index, got)
	}
	if err := Check(ctx(t), adminDSN(), dir); err != nil {
		t.Fatalf("check after generating: %v", err)
	}
	if g, err := Generate(ctx(t), adminDSN(), dir, "nothing"); err != nil || len(g.Files) != 0 {
		t.Fatalf("generate without schema changes wrote %v, %v; want nothing", g.Files, err)
	}
}

// staleSumDir returns a copy of the migrations in which a file was edited after atlas.sum
// was written.
func staleSumDir(t *testing.T) string {
	t.Helper()
	dir := copyDir(t, repoMigrations)
	seed := only(t, dir, "*_seed_products.sql")
	b, err := os.ReadFile(seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seed, append(b, "-- edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCheckRejectsAStaleSum(t *testing.T) {
	dir := staleSumDir(t)
	err := Check(ctx(t), adminDSN(), dir)
	if !errors.Is(err, migrate.ErrChecksumMismatch) || !strings.Contains(err.Error(), "-rehash") {
		t.Fatalf("check = %v, want a checksum mismatch pointing to -rehash", err)
	}
}

// TestGenerateRejectsAStaleSum: a migration directory whose atlas.sum does not match its
// files (a migration edited, or two branches' migrations merged) stops Generate as it stops
// Check, with the command that fixes it, instead of a bare "checksum mismatch"; nothing is
// written.
func TestGenerateRejectsAStaleSum(t *testing.T) {
	dir := staleSumDir(t)
	before := snapshot(t, dir)
	g, err := Generate(ctx(t), adminDSN(), dir, "anything")
	if !errors.Is(err, migrate.ErrChecksumMismatch) || !strings.Contains(err.Error(), "go run ./cmd/migrationgen -rehash") {
		t.Fatalf("generate = %v, %v; want a checksum mismatch pointing to -rehash", g.Files, err)
	}
	if after := snapshot(t, dir); !equal(before, after) {
		t.Fatal("generate changed the directory")
	}
}

// TestUnreachableServerNamesTheSetting: when the server for the scratch database does not
// answer, the error says how to name another one, since the default is only a guess.
func TestUnreachableServerNamesTheSetting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	dsn := "postgres://postgres@" + addr + "/postgres?sslmode=disable&connect_timeout=5"
	for name, run := range map[string]func() error{
		"generate": func() error { _, err := Generate(ctx(t), dsn, copyDir(t, repoMigrations), "anything"); return err },
		"check":    func() error { return Check(ctx(t), dsn, copyDir(t, repoMigrations)) },
	} {
		err := run()
		if err == nil || !strings.Contains(err.Error(), "-admin-dsn") || !strings.Contains(err.Error(), "ORDERFLOW_MIGRATIONGEN_DSN") ||
			!strings.Contains(err.Error(), addr) {
			t.Errorf("%s = %v, want an error naming the server, -admin-dsn and ORDERFLOW_MIGRATIONGEN_DSN", name, err)
		}
	}
}

// TestNothingWrittenSaysWhatWasRead: migrationgen reads ent/schema through the generated
// ent/migrate, so after a change to ent/schema without go generate it finds no change. Its
// "nothing written" must say so, or the change looks as if it needed no migration. It must
// also name the other cause, which make migration (having just run go generate) meets: a
// change PostgreSQL does not hold, such as a validator without its CHECK.
func TestNothingWrittenSaysWhatWasRead(t *testing.T) {
	var out strings.Builder
	report(&out, Generated{})
	for _, s := range []string{"nothing written", "go generate ./...", "validator", "CHECK of a new name"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("with no change, migrationgen says %q; want it to say %q", out.String(), s)
		}
	}
	out.Reset()
	report(&out, Generated{Files: []string{"migrations/1_x.sql", "migrations/atlas.sum"}})
	if out.String() != "wrote migrations/1_x.sql\nwrote migrations/atlas.sum\n" {
		t.Errorf("with a change, migrationgen says %q", out.String())
	}
}

func TestNewThenRehash(t *testing.T) {
	dir := copyDir(t, repoMigrations)
	file, err := New(dir, "backfill")
	if err != nil {
		t.Fatal(err)
	}
	local, err := migrate.NewLocalDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate.Validate(local); err != nil {
		t.Fatalf("after -new: %v", err)
	}
	files, err := local.Files()
	if err != nil {
		t.Fatal(err)
	}
	if last := files[len(files)-1]; filepath.Join(dir, last.Name()) != file || last.Desc() != "backfill" {
		t.Fatalf("newest migration is %s, want %s", last.Name(), file)
	}
	if err := os.WriteFile(file, []byte("UPDATE products SET stock = stock;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := migrate.Validate(local); !errors.Is(err, migrate.ErrChecksumMismatch) {
		t.Fatalf("validate after editing = %v, want a checksum mismatch", err)
	}
	if err := Rehash(dir); err != nil {
		t.Fatal(err)
	}
	if err := migrate.Validate(local); err != nil {
		t.Fatalf("after -rehash: %v", err)
	}
	if _, err := New(dir, "Bad Name"); err == nil {
		t.Fatal("New accepted a name with spaces and capitals")
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// copyDir copies the migration files of src into a temporary directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for name, b := range snapshot(t, src) {
		if err := os.WriteFile(filepath.Join(dst, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// snapshot reads every file of a migration directory except Go sources.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

// only returns the one file of dir that matches pattern.
func only(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("files matching %s in %s: %v, %v; want one", pattern, dir, m, err)
	}
	return m[0]
}

// TestCheckFailsWhenACheckDisagrees: CHECK constraints whose expression changed under the
// same name make no diff, so a migration file edited after the fact (and rehashed) went
// unnoticed, and the database refused with a 500 a value ent accepted. Check compares the
// constraints itself.
func TestCheckFailsWhenACheckDisagrees(t *testing.T) {
	dir := copyDir(t, repoMigrations)
	initial := only(t, dir, "*_initial.sql")
	b, err := os.ReadFile(initial)
	if err != nil {
		t.Fatal(err)
	}
	const expired = `, 'expired'::character varying])::text[])), CONSTRAINT "orders_total_non_negative"`
	if !strings.Contains(string(b), expired) {
		t.Fatalf("%s has no orders_status_valid naming 'expired'", initial)
	}
	edited := strings.Replace(string(b), expired, `])::text[])), CONSTRAINT "orders_total_non_negative"`, 1)
	if err := os.WriteFile(initial, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Rehash(dir); err != nil {
		t.Fatal(err)
	}
	err = Check(ctx(t), adminDSN(), dir)
	if err == nil || !strings.Contains(err.Error(), "CHECK orders_status_valid on orders") || !strings.Contains(err.Error(), "'expired'") {
		t.Fatalf("check = %v, want an error naming orders_status_valid and both its definitions", err)
	}
}

// withCheck changes, for the duration of the test, the CHECK name of table in the schema
// migrationgen reads (ent/migrate, as go generate ./... writes it from ent/schema) to expr,
// as a change to ent/schema's entsql.Checks would.
func withCheck(t *testing.T, table *entschema.Table, name, expr string) {
	t.Helper()
	old := table.Annotation.Checks
	checks := maps.Clone(old)
	checks[name] = expr
	table.Annotation.Checks = checks
	t.Cleanup(func() { table.Annotation.Checks = old })
}

// TestACheckChangedUnderItsOldNameIsRefused: products_name_length raised from 100 to 120
// characters in ent/schema under the same name makes no diff, so a migration written from
// the diff alone would leave the database refusing names of 101 to 120 characters. Check and
// Generate both fail naming the CHECK, its two definitions and the way out, and Generate
// writes nothing.
func TestACheckChangedUnderItsOldNameIsRefused(t *testing.T) {
	withCheck(t, entmigrate.ProductsTable, "products_name_length", "char_length(name) BETWEEN 1 AND 120")
	dir := copyDir(t, repoMigrations)
	before := snapshot(t, dir)
	want := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s passed; want it to refuse the changed products_name_length", what)
		}
		for _, s := range []string{"CHECK products_name_length on products", "<= 120", "<= 100", "new name", "make migration"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s = %v; want it to say %q", what, err, s)
			}
		}
	}
	want("check", Check(ctx(t), adminDSN(), dir))
	g, err := Generate(ctx(t), adminDSN(), dir, "longer_names")
	want("generate", err)
	if len(g.Files) != 0 {
		t.Errorf("generate wrote %v", g.Files)
	}
	if after := snapshot(t, dir); !equal(before, after) {
		t.Fatal("generate changed the directory")
	}
}

// TestCheckFailsWhenACheckRefusesAnEnumValue: a value added to an ent enum without its
// CHECK makes no difference between the migrated database and ent/schema's, the enum being
// a plain varchar to PostgreSQL, yet the database refuses it.
func TestCheckFailsWhenACheckRefusesAnEnumValue(t *testing.T) {
	var status *entschema.Column
	for _, c := range entmigrate.OrdersTable.Columns {
		if c.Name == "status" {
			status = c
		}
	}
	if status == nil {
		t.Fatal("orders has no status column")
	}
	old := status.Enums
	status.Enums = append(slices.Clip(old), "refunded")
	t.Cleanup(func() { status.Enums = old })
	err := Check(ctx(t), adminDSN(), copyDir(t, repoMigrations))
	if err == nil || !strings.Contains(err.Error(), "orders.orders_status_valid") || !strings.Contains(err.Error(), `"refunded"`) {
		t.Fatalf("check = %v, want an error naming orders_status_valid and the value it refuses", err)
	}
}

// TestCheckFailsWhenAConstraintIsLeftNotValid: a CHECK or foreign key added NOT VALID whose
// VALIDATE file is missing holds for new rows only. The diff cannot tell; a CHECK's definition
// then differs from ent/schema's only by NOT VALID, a foreign key's not at all.
func TestCheckFailsWhenAConstraintIsLeftNotValid(t *testing.T) {
	for _, c := range []struct{ validation, named, constraint string }{
		{"*_validate_users_token_version.sql", "CHECK users_token_version_non_negative on users", "users_token_version_non_negative"},
		{"*_validate_idempotency_keys_order_fk.sql", "FOREIGN KEY idempotency_keys_orders_idempotency_keys on idempotency_keys", "idempotency_keys_orders_idempotency_keys"},
	} {
		t.Run(c.constraint, func(t *testing.T) {
			dir := copyDir(t, repoMigrations)
			if err := os.Remove(only(t, dir, c.validation)); err != nil {
				t.Fatal(err)
			}
			if err := Rehash(dir); err != nil {
				t.Fatal(err)
			}
			err := Check(ctx(t), adminDSN(), dir)
			if err == nil || !strings.Contains(err.Error(), c.named+" is left NOT VALID") ||
				!strings.Contains(err.Error(), `VALIDATE CONSTRAINT "`+c.constraint+`"`) {
				t.Fatalf("check = %v, want an error naming %s left NOT VALID and the statement that validates it", err, c.named)
			}
			if strings.Contains(err.Error(), "changed under its old name") {
				t.Errorf("check = %v, want the constraint named once, as left NOT VALID, not as changed", err)
			}
		})
	}
}

// TestConstraintsAddedToExistingTablesAreValidatedApart: a CHECK or foreign key added to a
// table the migrations already create, written as a plain ADD CONSTRAINT, would scan the
// table under a lock that blocks its reads and writes, against the rule of
// migrations/README.md. Generate adds it NOT VALID and validates it in a second file,
// <name>_validate, which sorts right after the first.
func TestConstraintsAddedToExistingTablesAreValidatedApart(t *testing.T) {
	// A new CHECK on products, and (with the files that made it removed) the foreign key of
	// idempotency_keys.order_id changed from ON DELETE CASCADE to SET NULL.
	withCheck(t, entmigrate.ProductsTable, "products_stock_below_a_billion", "stock < 1000000000")
	dir := copyDir(t, repoMigrations)
	for _, pattern := range []string{"*_keep_idempotency_keys_of_deleted_orders.sql", "*_validate_idempotency_keys_order_fk.sql"} {
		if err := os.Remove(only(t, dir, pattern)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Rehash(dir); err != nil {
		t.Fatal(err)
	}

	g, err := Generate(ctx(t), adminDSN(), dir, "stock_limit")
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	if len(g.Files) != 3 || !strings.HasSuffix(g.Files[0], "_stock_limit.sql") || !strings.HasSuffix(g.Files[1], "_stock_limit_validate.sql") ||
		filepath.Base(g.Files[1]) <= filepath.Base(g.Files[0]) || filepath.Base(g.Files[2]) != migrate.HashFileName {
		t.Fatalf("generate wrote %v, want the migration, the file validating it right after, and atlas.sum", g.Files)
	}
	added, validation := read(t, g.Files[0]), read(t, g.Files[1])
	for _, c := range []struct{ table, name string }{
		{"products", "products_stock_below_a_billion"},
		{"idempotency_keys", "idempotency_keys_orders_idempotency_keys"},
	} {
		if !regexp.MustCompile(`ADD CONSTRAINT "` + c.name + `" [^,;]* NOT VALID[,;]`).MatchString(added) {
			t.Errorf("%s does not add %s NOT VALID:\n%s", g.Files[0], c.name, added)
		}
		validate := `ALTER TABLE "` + c.table + `" VALIDATE CONSTRAINT "` + c.name + `";`
		if !strings.Contains(validation, validate) {
			t.Errorf("%s lacks %s:\n%s", g.Files[1], validate, validation)
		}
	}
	if strings.Contains(added, "VALIDATE") {
		t.Errorf("%s validates in the file that adds:\n%s", g.Files[0], added)
	}
	var out strings.Builder
	report(&out, g)
	for _, s := range []string{filepath.Base(g.Files[1]), "NOT VALID", "products.products_stock_below_a_billion", "idempotency_keys.idempotency_keys_orders_idempotency_keys"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("migrationgen says %q; want it to name %s", out.String(), s)
		}
	}
	// atlas.sum covers both files, and the migrations build ent/schema, validated.
	if err := Check(ctx(t), adminDSN(), dir); err != nil {
		t.Fatalf("check after generating: %v", err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
