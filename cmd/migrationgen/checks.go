package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"entgo.io/ent/schema/field"

	entmigrate "orderflow/ent/migrate"
	"orderflow/platform/migrate"
)

// checkConstraints makes sure that every value of an ent enum passes the CHECKs on its
// column in the database that the migrations in dirPath build. The diff cannot see an enum
// value that a hand-written CHECK lacks, the enum being a plain varchar to PostgreSQL, nor a
// CHECK whose expression changed under the same name (in ent/schema, or in a migration file
// edited and rehashed after the fact): ent would accept the value and the database refuse it.
func checkConstraints(ctx context.Context, adminDSN, dirPath string) (err error) {
	db, drop, err := scratchDatabase(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer func() {
		db.Close()
		err = errors.Join(err, drop())
	}()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := migrate.ApplyFS(ctx, db, os.DirFS(dirPath), quiet); err != nil {
		return fmt.Errorf("replay the migrations: %w", err)
	}
	refused, err := refusedEnumValues(ctx, db)
	if err != nil {
		return err
	}
	if len(refused) > 0 {
		return fmt.Errorf("%s: ent would accept what the database refuses; allow the values in a CHECK of a new name in ent/schema (one changed under the same name makes no diff), then run go run ./cmd/migrationgen <name>",
			strings.Join(refused, "; "))
	}
	return nil
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
