package migrate_test

import (
	"testing"

	"orderflow/internal/testenv"
)

// TestNoIndexIsAPrefixOfAnother: a plain index whose columns lead another index of its
// table serves no query that the other does not, and costs every write to the table.
func TestNoIndexIsAPrefixOfAnother(t *testing.T) {
	db := open(t, testenv.Database(t).DSN())
	rows, err := db.Query(`
		SELECT s.indexrelid::regclass::text, l.indexrelid::regclass::text
		FROM pg_index s
		JOIN pg_index l ON l.indrelid = s.indrelid AND l.indexrelid <> s.indexrelid
		JOIN pg_class c ON c.oid = s.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
		WHERE NOT s.indisunique
			AND s.indpred IS NULL AND l.indpred IS NULL
			AND s.indexprs IS NULL AND l.indexprs IS NULL
			AND (l.indkey::text = s.indkey::text OR l.indkey::text LIKE s.indkey::text || ' %')
		ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var short, long string
		if err := rows.Scan(&short, &long); err != nil {
			t.Fatal(err)
		}
		t.Errorf("index %s is a prefix of %s: drop it", short, long)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
