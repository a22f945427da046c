package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"entgo.io/ent/schema/field"

	entmigrate "orderflow/ent/migrate"
	"orderflow/platform/migrate"
)

// checkConstraints builds, each on a scratch database, the schema that the migrations in
// dirPath build and the one ent/schema describes (as generated into ent/migrate), and fails
// on what the diff cannot see:
//
//   - a CHECK of the same name whose definition differs: the diff matches CHECKs by name
//     only, so one changed under its old name in ent/schema (or in a migration file edited
//     and rehashed after the fact) writes no migration, and the database refuses with a 500
//     what the API and ent accept. Both definitions are compared as the same server prints
//     them (settledChecks);
//   - a CHECK or foreign key that the migrations add NOT VALID and never validate: it holds
//     for new rows only, and its definition is ent/schema's but for NOT VALID, which the
//     diff ignores;
//   - a value of an ent enum that a CHECK on its column refuses, in the schema ent/schema
//     describes: an enum is a plain varchar to PostgreSQL, so a value added to it without
//     its CHECK makes no difference between the two databases, yet the database refuses it.
//
// A CHECK that only one of the databases has is the diff's business, not this function's.
func checkConstraints(ctx context.Context, adminDSN, dirPath string) (err error) {
	migrated, dropMigrated, err := scratchDatabase(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer func() {
		migrated.Close()
		err = errors.Join(err, dropMigrated())
	}()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := migrate.ApplyFS(ctx, migrated, os.DirFS(dirPath), quiet); err != nil {
		return fmt.Errorf("replay the migrations: %w", err)
	}
	described, dropDescribed, err := scratchDatabase(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer func() {
		described.Close()
		err = errors.Join(err, dropDescribed())
	}()
	if err := entmigrate.NewSchema(entsql.OpenDB(dialect.Postgres, described)).Create(ctx); err != nil {
		return fmt.Errorf("build the schema of ent/schema on a scratch database: %w", err)
	}

	var problems []error
	changed, err := changedChecks(ctx, migrated, described)
	if err != nil {
		return err
	}
	for _, c := range changed {
		problems = append(problems, c.err())
	}
	unvalidated, err := unvalidatedConstraints(ctx, migrated)
	if err != nil {
		return err
	}
	for _, k := range unvalidated {
		problems = append(problems, k.err())
	}
	refused, err := refusedEnumValues(ctx, described)
	if err != nil {
		return err
	}
	if len(refused) > 0 {
		problems = append(problems, fmt.Errorf("%s: ent would accept what the database refuses; allow the values in a CHECK of a new name in ent/schema (one changed under the same name makes no diff), then run go generate ./... and go run ./cmd/migrationgen <name>",
			strings.Join(refused, "; ")))
	}
	return errors.Join(problems...)
}

// checkDiff is a CHECK defined one way by the migrations and another by ent/schema.
type checkDiff struct {
	table, name           string
	migrations, entSchema string
}

// err says how the definitions differ and what to do.
func (c checkDiff) err() error {
	return fmt.Errorf("CHECK %s on %s is %s in ent/schema but %s in the database the migrations build: a CHECK changed under its old name makes no migration; give it a new name in ent/schema (the diff then drops the old one and adds the new), then run make migration name=<name>",
		c.name, c.table, c.entSchema, c.migrations)
}

// unvalidated is a CHECK or foreign key (kind) that the migrations add NOT VALID and never
// validate.
type unvalidated struct {
	kind string
	constraint
}

// err says what is wrong and what to do.
func (k unvalidated) err() error {
	return fmt.Errorf("%s %s on %s is left NOT VALID by the migrations (it holds for new rows only, and a row written before it may break it): validate it in a file of its own, go run ./cmd/migrationgen -new validate_%s, holding ALTER TABLE %s VALIDATE CONSTRAINT %s; then go run ./cmd/migrationgen -rehash",
		k.kind, k.name, k.table, k.name, k.table, quoteIdent(k.name))
}

// changedChecks compares the CHECKs that migrated and described both have, by table and
// name, and returns those whose definitions differ, ordered by table and name. A CHECK that
// only the migrations leave NOT VALID is unvalidatedConstraints' to tell, not a change.
func changedChecks(ctx context.Context, migrated, described *sql.DB) ([]checkDiff, error) {
	fromMigrations, _, err := settledChecks(ctx, migrated)
	if err != nil {
		return nil, fmt.Errorf("read the CHECKs the migrations build: %w", err)
	}
	fromSchema, order, err := settledChecks(ctx, described)
	if err != nil {
		return nil, fmt.Errorf("read the CHECKs of ent/schema: %w", err)
	}
	var changed []checkDiff
	for _, k := range order {
		def, ok := fromMigrations[k]
		if def = strings.TrimSuffix(def, " NOT VALID"); ok && def != fromSchema[k] {
			changed = append(changed, checkDiff{table: k.table, name: k.name, migrations: def, entSchema: fromSchema[k]})
		}
	}
	return changed, nil
}

// maxRounds bounds the rounds of settledChecks; two suffice for the forms PostgreSQL 15
// prints.
const maxRounds = 5

// settledChecks is checkDefinitions once the definitions no longer change when PostgreSQL
// reads them back. Its printed form of an expression does not always read back as the same
// tree: "status IN ('a')" prints as "(status)::text = ANY ((ARRAY['a'::character
// varying])::text[])", which reads back, and prints, as "... ANY (ARRAY[('a'::character
// varying)::text])". The migration files hold the printed form of their day, ent/schema the
// source form, so each CHECK of db (a scratch database, its tables empty) is added again
// with its own definition until none changes.
func settledChecks(ctx context.Context, db *sql.DB) (map[constraint]string, []constraint, error) {
	defs, order, err := checkDefinitions(ctx, db)
	for round := 0; err == nil && round < maxRounds; round++ {
		for _, k := range order {
			q := fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s, ADD CONSTRAINT %s %s", k.table, quoteIdent(k.name), quoteIdent(k.name), defs[k])
			if _, err := db.ExecContext(ctx, q); err != nil {
				return nil, nil, fmt.Errorf("add CHECK %s on %s again: %w", k.name, k.table, err)
			}
		}
		var again map[constraint]string
		again, order, err = checkDefinitions(ctx, db)
		if err == nil && maps.Equal(again, defs) {
			return defs, order, nil
		}
		defs = again
	}
	return defs, order, err
}

// checkDefinitions reads the definitions of the CHECKs on the tables of db's public schema,
// as pg_get_constraintdef gives them, and their names ordered by table and name.
func checkDefinitions(ctx context.Context, db *sql.DB) (map[constraint]string, []constraint, error) {
	rows, err := db.QueryContext(ctx, `SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE contype = 'c' AND connamespace = 'public'::regnamespace
ORDER BY 1, 2`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	defs := map[constraint]string{}
	var order []constraint
	for rows.Next() {
		var k constraint
		var def string
		if err := rows.Scan(&k.table, &k.name, &def); err != nil {
			return nil, nil, err
		}
		defs[k] = def
		order = append(order, k)
	}
	return defs, order, rows.Err()
}

// unvalidatedConstraints returns the CHECKs and foreign keys on the tables of db's public
// schema that were added NOT VALID and never validated, ordered by table and name.
func unvalidatedConstraints(ctx context.Context, db *sql.DB) ([]unvalidated, error) {
	rows, err := db.QueryContext(ctx, `SELECT CASE contype WHEN 'c' THEN 'CHECK' ELSE 'FOREIGN KEY' END,
	conrelid::regclass::text, conname FROM pg_constraint
WHERE contype IN ('c', 'f') AND NOT convalidated AND connamespace = 'public'::regnamespace
ORDER BY 2, 3`)
	if err != nil {
		return nil, fmt.Errorf("read the constraints the migrations build: %w", err)
	}
	defer rows.Close()
	var keys []unvalidated
	for rows.Next() {
		var k unvalidated
		if err := rows.Scan(&k.kind, &k.table, &k.name); err != nil {
			return nil, fmt.Errorf("read the constraints the migrations build: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// refusedEnumValues describes each value of an ent enum that a CHECK on its column refuses
// in db. A CHECK passes when its expression is true or NULL.
func refusedEnumValues(ctx context.Context, db *sql.DB) ([]string, error) {
	var problems []string
	for _, t := range entmigrate.Tables {
		for _, c := range t.Columns {
			if c.Type != field.TypeEnum {
				continue
			}
			rows, err := db.QueryContext(ctx, `SELECT con.conname, pg_get_expr(con.conbin, con.conrelid)
FROM pg_constraint con JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey)
WHERE con.contype = 'c' AND con.conrelid = to_regclass($1) AND a.attname = $2 AND cardinality(con.conkey) = 1`,
				`"`+t.Name+`"`, c.Name)
			if err != nil {
				return nil, fmt.Errorf("read the checks of %s.%s: %w", t.Name, c.Name, err)
			}
			type check struct{ name, expr string }
			var checks []check
			for rows.Next() {
				var ch check
				if err := rows.Scan(&ch.name, &ch.expr); err != nil {
					rows.Close()
					return nil, fmt.Errorf("read the checks of %s.%s: %w", t.Name, c.Name, err)
				}
				checks = append(checks, ch)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("read the checks of %s.%s: %w", t.Name, c.Name, err)
			}
			for _, ch := range checks {
				// The expression names the column, which the unnest's alias stands for.
				col := `"` + c.Name + `"`
				q := `SELECT ` + col + ` FROM unnest($1::text[]) AS v(` + col + `) WHERE NOT coalesce((` + ch.expr + `), true)`
				var bad []string
				rows, err := db.QueryContext(ctx, q, c.Enums)
				if err != nil {
					return nil, fmt.Errorf("try the values of %s.%s on %s: %w", t.Name, c.Name, ch.name, err)
				}
				for rows.Next() {
					var v string
					if err := rows.Scan(&v); err != nil {
						rows.Close()
						return nil, err
					}
					bad = append(bad, fmt.Sprintf("%q", v))
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return nil, fmt.Errorf("try the values of %s.%s on %s: %w", t.Name, c.Name, ch.name, err)
				}
				if len(bad) > 0 {
					problems = append(problems, fmt.Sprintf("CHECK %s.%s refuses %s of ent's enum %s", t.Name, ch.name, strings.Join(bad, ", "), c.Name))
				}
			}
		}
	}
	return problems, nil
}

// quoteIdent quotes an SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
