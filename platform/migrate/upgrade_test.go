package migrate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"orderflow/internal/testenv"
	"orderflow/platform/migrate"
)

// upgradeRows are rows that orderflow could write at each state of the schema, keyed by the
// first migration whose schema they need; each runs on every database migrated at least that far.
var upgradeRows = []struct {
	since string
	sql   string
}{
	{"20261201023300", `INSERT INTO users (id, name, email, password_hash, role, created_at, updated_at) VALUES
	  (501, 'Administrator', 'admin@orderprocessing.local', 'hash', 'admin', now(), now()),
	  (502, 'Ada Lovelace', 'ada@example.com', 'hash', 'customer', now(), now()),
	  (503, '` + strings.Repeat("é", 100) + `', '` + strings.Repeat("e", 90) + `@x.io', 'hash', 'customer', now(), now())`},
	{"20261201023300", `INSERT INTO products (id, name, description, price, stock, created_at, updated_at) VALUES
	  (501, 'Espresso beans', NULL, 24.90, 40, now(), now()),
	  (502, '` + strings.Repeat("ü", 100) + `', '` + strings.Repeat("ß", 500) + `', 0, 0, now(), now())`},
	{"20261201023300", `INSERT INTO orders (id, user_id, total, status, created_at, updated_at) VALUES
	  (501, 502, 49.80, 'pending', now(), now()),
	  (502, 502, 24.90, 'processing', now(), now()),
	  (503, 503, 0.00, 'completed', now(), now()),
	  (504, 503, 9999999999.99, 'expired', now(), now())`},
	{"20261201023300", `INSERT INTO order_items (order_id, product_id, quantity, price) VALUES
	  (501, 501, 2, 24.90), (502, 501, 1, 24.90), (503, 502, 1, 0), (504, 501, 9223372036854775807, 24.90)`},
	{"20261201023300", `INSERT INTO notifications (order_id, event_type, message, is_email_sent, created_at) VALUES
	  (501, 'OrderCreated', 'Order 501 was created.', true, now()),
	  (503, 'OrderCompleted', 'Order 503 was completed.', true, now()),
	  (504, 'OrderExpired', 'Order 504 expired.', false, now())`},
	{"20261201023300", `INSERT INTO outbox (event_id, event_type, routing_key, payload, headers, published_at, attempts, last_error, created_at) VALUES
	  (gen_random_uuid(), 'OrderCreated', 'order.created', '{"orderId": 501}', '{"traceparent": "00-x"}', now(), 1, NULL, now()),
	  (gen_random_uuid(), 'OrderCompleted', 'order.completed', '{"orderId": 503}', NULL, NULL, 7, 'broker unavailable', now())`},
	{"20261201023651", `INSERT INTO idempotency_keys (key, request_hash, created_at, order_id, user_id) VALUES
	  ('k', repeat('a', 64), now(), 501, 502),
	  ('` + strings.Repeat("K", 255) + `', repeat('b', 64), now(), 503, 503)`},
	{"20261205210253", `UPDATE outbox SET next_attempt_at = now() + interval '1 minute' WHERE published_at IS NULL`},
	{"20261206115632", `UPDATE users SET token_version = 2 WHERE id = 502`},
	{"20261207111500", `UPDATE orders SET payment_declined_at = now() WHERE id = 502`},
	{"20261208031411", `UPDATE orders SET processing_by_admin_at = now() WHERE id = 502`},
}

// TestUpgradeFromEveryEarlierState migrates databases holding rows that each earlier version
// could write to the latest schema: each ends with the schema of a new database and its rows.
func TestUpgradeFromEveryEarlierState(t *testing.T) {
	ctx := context.Background()
	files := embeddedFiles(t)
	want := schemaOf(t, open(t, testenv.Database(t).DSN()))
	for n := 1; n < len(files); n++ {
		last := files[n-1]
		t.Run(last.Name(), func(t *testing.T) {
			t.Parallel()
			db := open(t, testenv.EmptyDatabase(t).DSN())
			old := copyFS(t)
			for _, f := range files[n:] {
				delete(old, f.Name())
			}
			if _, err := migrate.ApplyFS(ctx, db, rehash(t, old), quiet); err != nil {
				t.Fatalf("apply the first %d files: %v", n, err)
			}
			rows := 0
			for _, r := range upgradeRows {
				if r.since > last.Version() {
					continue
				}
				res, err := db.ExecContext(ctx, r.sql)
				if err != nil {
					t.Fatalf("rows of version %s: %v\n%s", last.Version(), err, r.sql)
				}
				if strings.HasPrefix(r.sql, "INSERT") {
					k, _ := res.RowsAffected()
					rows += int(k)
				}
			}
			if _, err := migrate.Apply(ctx, db, quiet); err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			if got := schemaOf(t, db); got != want {
				t.Errorf("upgraded schema differs from a new database's:\n%s", lineDiff(want, got))
			}
			var kept int
			if err := db.QueryRowContext(ctx, `SELECT
  (SELECT count(*) FROM users WHERE id > 500) + (SELECT count(*) FROM products WHERE id > 500) +
  (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_items) + (SELECT count(*) FROM notifications) +
  (SELECT count(*) FROM outbox) + (SELECT count(*) FROM idempotency_keys)`).Scan(&kept); err != nil {
				t.Fatal(err)
			}
			if kept != rows {
				t.Errorf("%d rows after the upgrade, want the %d written before it", kept, rows)
			}

		})
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for l := range w {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for l := range g {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

// TestMigrationBrokenByExistingRows: a migration that rows already in the database break
// (here an empty Idempotency-Key, under the check that came later) fails with one line that
// names the file, says why and what to do; the database stays as it was, and once the rows
// are corrected the same migration goes through.
func TestMigrationBrokenByExistingRows(t *testing.T) {
	ctx := context.Background()
	const file = "20261206055427_idempotency_key_length.sql"
	db := open(t, testenv.EmptyDatabase(t).DSN())
	old := copyFS(t)
	for _, f := range embeddedFiles(t) {
		if f.Name() >= file {
			delete(old, f.Name())
		}
	}
	if _, err := migrate.ApplyFS(ctx, db, rehash(t, old), quiet); err != nil {
		t.Fatalf("apply the files before %s: %v", file, err)
	}
	if _, err := db.ExecContext(ctx, `
INSERT INTO users (id, name, email, password_hash, role, created_at, updated_at) VALUES (501, 'Ada', 'ada@x.io', 'h', 'customer', now(), now());
INSERT INTO orders (id, user_id, total, status, created_at, updated_at) VALUES (501, 501, 1, 'pending', now(), now());
INSERT INTO idempotency_keys (key, request_hash, created_at, order_id, user_id) VALUES ('', repeat('a', 64), now(), 501, 501)`); err != nil {
		t.Fatal(err)
	}
	_, err := migrate.Apply(ctx, db, quiet)
	if err == nil {
		t.Fatal("apply succeeded on a row the new check refuses")
	}
	msg := err.Error()
	for _, want := range []string{file, `check constraint "idempotency_keys_key_length"`, "violated", "rolled back", "correct the rows"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	for _, noise := range []string{"\n", "write revision", "transaction is aborted"} {
		if strings.Contains(msg, noise) {
			t.Errorf("error %q holds %q", msg, noise)
		}
	}
	pending, err := migrate.Pending(ctx, db)
	if err != nil || len(pending) == 0 || pending[0] != file {
		t.Fatalf("pending after the failure = %v, %v; want %s first", pending, err, file)
	}
	if _, err := db.ExecContext(ctx, `UPDATE idempotency_keys SET key = 'k' WHERE key = ''`); err != nil {
		t.Fatalf("the database is not usable after the failed migration: %v", err)
	}
	if _, err := migrate.Apply(ctx, db, quiet); err != nil {
		t.Fatalf("apply after correcting the rows: %v", err)
	}
}

// TestMigrationGivesUpOnALockHeldLong: a migration that must wait for a lock that a long
// transaction holds (a report, a dump) gives up after a while, instead of waiting with it
// and holding up every query on the table queued behind its own request, and says so.
func TestMigrationGivesUpOnALockHeldLong(t *testing.T) {
	ctx := context.Background()
	cfg := testenv.EmptyDatabase(t)
	db := open(t, cfg.DSN())
	if _, err := migrate.Apply(ctx, db, quiet); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// A new column on orders locks the table against reads as well as writes.
	const file = "29991231000000_add_order_note.sql"
	next := withFile(t, copyFS(t), file, `ALTER TABLE "orders" ADD COLUMN "note" text;`+"\n")
	report, err := open(t, cfg.DSN()).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer report.Rollback()
	if _, err := report.ExecContext(ctx, `SELECT count(*) FROM orders`); err != nil {
		t.Fatal(err)
	}
	applyCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = migrate.ApplyFS(applyCtx, db, next, quiet)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "lock") || applyCtx.Err() != nil {
		t.Fatalf("apply while a transaction reads orders = %v; want an error naming %s and the lock it waited for", err, file)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO users (id, name, email, password_hash, role, created_at, updated_at) VALUES (501, 'Ada', 'ada@x.io', 'h', 'customer', now(), now());
INSERT INTO orders (user_id, total, status, created_at, updated_at) VALUES (501, 1, 'pending', now(), now())`); err != nil {
		t.Fatal(err)
	}
	if err := report.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.ApplyFS(ctx, db, next, quiet); err != nil {
		t.Fatalf("apply once the transaction ended: %v", err)
	}
}

// TestApplyOnAPoolOfOneConnection: database.maxConns may be 1; the migration lock, held on
// a connection of the pool, must not leave the migrations waiting for another.
func TestApplyOnAPoolOfOneConnection(t *testing.T) {
	db := open(t, testenv.EmptyDatabase(t).DSN())
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := migrate.Apply(ctx, db, quiet)
	if err != nil {
		t.Fatalf("apply on a pool of one connection: %v", err)
	}
	if want := len(embeddedFiles(t)); n != want {
		t.Fatalf("applied %d files, want %d", n, want)
	}
	if _, err := migrate.Apply(ctx, db, quiet); err != nil {
		t.Fatalf("apply again: %v", err)
	}
}
