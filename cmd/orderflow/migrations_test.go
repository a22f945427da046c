package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"orderflow/configuration"
	"orderflow/internal/testenv"
)

// TestWorkerAndCronjobRequireMigrations runs the worker and the cron job as their binary
// against databases at several stages of migration. They never migrate, so on a database
// that lacks a migration they fail the start with one line naming it and what to do, before
// writing anything; on a database with every migration, or with a newer version's too (a
// rollback of the binary), they start.
func TestWorkerAndCronjobRequireMigrations(t *testing.T) {
	files, err := filepath.Glob("../../migrations/*.sql")
	if err != nil || len(files) < 2 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	slices.Sort(files)
	first, last := filepath.Base(files[0]), filepath.Base(files[len(files)-1])
	version := func(name string) string { v, _, _ := strings.Cut(name, "_"); return v }

	cases := []struct {
		name     string
		database func(t *testing.T) configuration.Database
		// want is the start of the error after the database's name; empty when the process
		// starts.
		want string
	}{
		{"an empty database", func(t *testing.T) configuration.Database { return testenv.EmptyDatabase(t) },
			fmt.Sprintf("lacks %d migrations this version needs (%s, ", len(files), first)},
		// The revisions table is all the check reads: without the last revision, the database
		// is, for it, one that the previous version migrated.
		{"a database without the last migration", func(t *testing.T) configuration.Database {
			d := testenv.Database(t)
			execSQL(t, d, `DELETE FROM "atlas_schema_revisions"."atlas_schema_revisions" WHERE version = $1`, version(last))
			return d
		}, fmt.Sprintf("lacks 1 migration this version needs (%s)", last)},
		{"a fully migrated database", func(t *testing.T) configuration.Database { return testenv.Database(t) }, ""},
		{"a database a newer version migrated", func(t *testing.T) configuration.Database {
			d := testenv.Database(t)
			execSQL(t, d, `INSERT INTO "atlas_schema_revisions"."atlas_schema_revisions"
  (version, description, executed_at, execution_time, hash, operator_version)
VALUES ('29991231000000', 'add_note', now(), 1, 'hash', 'orderflow')`)
			return d
		}, ""},
	}
	for _, process := range []string{"worker", "cronjob"} {
		for _, tc := range cases {
			t.Run(process+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				d := tc.database(t)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, binary, process)
				cmd.Env = append(env(t), "ORDERFLOW_DATABASE_NAME="+d.Name)
				ready, out := startUntilReady(t, cmd, process, nil)
				if tc.want == "" {
					if !ready {
						t.Fatalf("%s did not start on %s:\n%s", process, tc.name, out)
					}
					return
				}
				if ready {
					t.Fatalf("%s started on %s:\n%s", process, tc.name, out)
				}
				const todo = `: start the api or run "orderflow migrate" first`
				prefix := "orderflow " + process + ": database " + d.Name + " " + tc.want
				if strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, prefix) || !strings.HasSuffix(out, todo) {
					t.Errorf("output = %q, want one line starting %q and ending %q", out, prefix, todo)
				}
				if tc.name == "an empty database" {
					var schemas, tables int
					if err := testenv.Pool(t, d).QueryRow(`SELECT
  (SELECT count(*) FROM pg_namespace WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\_%'),
  (SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))`).Scan(&schemas, &tables); err != nil {
						t.Fatal(err)
					}
					if schemas != 0 || tables != 0 {
						t.Errorf("%s left %d schemas and %d tables in the empty database, want none", process, schemas, tables)
					}
				}
			})
		}
	}
}

// execSQL runs one statement on the database d.
func execSQL(t *testing.T, d configuration.Database, query string, args ...any) {
	t.Helper()
	if _, err := testenv.Pool(t, d).Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
