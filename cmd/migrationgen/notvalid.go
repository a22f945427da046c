package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	atlas "ariga.io/atlas/sql/schema"
	"entgo.io/ent/dialect/sql/schema"
)

// constraint names a CHECK or foreign key by its table and name: PostgreSQL's constraint
// names are unique per table only.
type constraint struct{ table, name string }

// String is the constraint as the report names it.
func (c constraint) String() string { return c.table + "." + c.name }

// deferValidation is a diff hook that adds NOT VALID each CHECK and foreign key that the
// diff adds to a table the migrations already create, and records it in added. Added as
// generated, the constraint would be checked against every row of the table under the
// ALTER TABLE's lock, which blocks its reads and writes; NOT VALID skips the scan, which the
// VALIDATE CONSTRAINT of a later file makes under a lock that blocks neither
// (migrations/README.md, "Reviewing the SQL: locks"). A new table is empty: its constraints
// are left as they are.
func deferValidation(added *[]constraint) schema.DiffHook {
	return func(next schema.Differ) schema.Differ {
		return schema.DiffFunc(func(current, desired *atlas.Schema) ([]atlas.Change, error) {
			changes, err := next.Diff(current, desired)
			if err != nil {
				return nil, err
			}
			for _, c := range changes {
				if m, ok := c.(*atlas.ModifyTable); ok {
					m.Changes = addedNotValid(m.T.Name, m.Changes, added)
				}
			}
			return changes, nil
		})
	}
}

// addedNotValid returns the changes of an existing table with each CHECK and foreign key
// they add marked NOT VALID, and a modified one dropped and added again NOT VALID (which is
// what PostgreSQL runs for a modification anyway). It records the constraints in added.
func addedNotValid(table string, changes []atlas.Change, added *[]constraint) []atlas.Change {
	out := make([]atlas.Change, 0, len(changes))
	notValid := func(name string) []atlas.Clause {
		*added = append(*added, constraint{table: table, name: name})
		return []atlas.Clause{&postgres.NotValid{}}
	}
	for _, c := range changes {
		switch c := c.(type) {
		case *atlas.AddCheck:
			if c.C.Name != "" { // an unnamed one could not be validated by name
				c.Extra = append(c.Extra, notValid(c.C.Name)...)
			}
			out = append(out, c)
		case *atlas.ModifyCheck:
			if c.To.Name == "" {
				out = append(out, c)
				continue
			}
			out = append(out, &atlas.DropCheck{C: c.From}, &atlas.AddCheck{C: c.To, Extra: notValid(c.To.Name)})
		case *atlas.AddForeignKey:
			c.Extra = append(c.Extra, notValid(c.F.Symbol)...)
			out = append(out, c)
		case *atlas.ModifyForeignKey:
			out = append(out, &atlas.DropForeignKey{F: c.From}, &atlas.AddForeignKey{F: c.To, Extra: notValid(c.To.Symbol)})
		default:
			out = append(out, c)
		}
	}
	return out
}

// writeValidation writes, right after the migration file generated, a file named
// <name>_validate that validates the constraints it added NOT VALID, and returns its path.
// Its version is the generated file's plus a second, so that it sorts right after it.
func writeValidation(dir migrate.Dir, dirPath, generated, name string, added []constraint) (string, error) {
	version, _, _ := strings.Cut(generated, "_")
	t, err := time.Parse(versionLayout, version)
	if err != nil {
		return "", fmt.Errorf("read the version of %s: %w", generated, err)
	}
	file := fmt.Sprintf("%s_%s_validate.sql", t.Add(time.Second).Format(versionLayout), name)
	var b strings.Builder
	fmt.Fprintf(&b, "-- Validate the constraints that %s added NOT VALID.\n", generated)
	b.WriteString("-- This scans each table under a lock that lets it be read and written meanwhile;\n")
	b.WriteString("-- adding them valid would have scanned it under one that blocks both.\n")
	for _, c := range added {
		fmt.Fprintf(&b, "ALTER TABLE %s VALIDATE CONSTRAINT %s;\n", quoteIdent(c.table), quoteIdent(c.name))
	}
	if err := dir.WriteFile(file, []byte(b.String())); err != nil {
		return "", fmt.Errorf("write %s: %w", file, err)
	}
	return filepath.Join(dirPath, file), nil
}

// versionLayout is the time layout of a migration's version (migrate.NewVersion).
const versionLayout = "20060102150405"
