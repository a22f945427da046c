package testutil

import (
	"database/sql"
	"testing"
)

// Column reads the one column of rows, closes them and returns the values in order; a
// failed scan or read fails the test.
func Column[T any](t testing.TB, rows *sql.Rows) []T {
	t.Helper()
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
