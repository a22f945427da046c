package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"orderflow/domain"
	"orderflow/internal/testenv"
)

// SQLSTATEs of the violations.
const (
	checkViolation      = "23514"
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// fixtures are valid rows the cases build on: user 1001 with order 1001 holding one item of
// product 1001 and one notification.
var fixtures = []string{
	`INSERT INTO users (id, name, email, password_hash, role, created_at, updated_at)
	 VALUES (1001, 'Ada', 'ada@x.io', 'hash', 'customer', now(), now())`,
	`INSERT INTO products (id, name, description, price, stock, created_at, updated_at)
	 VALUES (1001, 'Widget', 'A widget.', 10.00, 5, now(), now())`,
	`INSERT INTO orders (id, user_id, total, status, created_at, updated_at)
	 VALUES (1001, 1001, 10.00, 'pending', now(), now())`,
	`INSERT INTO order_items (id, order_id, product_id, quantity, price) VALUES (1001, 1001, 1001, 1, 10.00)`,
	`INSERT INTO notifications (order_id, event_type, message, created_at)
	 VALUES (1001, 'OrderCreated', 'Order 1001 was created.', now())`,
	`INSERT INTO outbox (event_id, event_type, routing_key, payload, created_at)
	 VALUES ('00000000-0000-0000-0000-000000000001', 'OrderCreated', 'order.created', '{}', now())`,
	`INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at)
	 VALUES (1001, 'k1', repeat('0', 64), 1001, now())`,
}

// Row templates for the violating statements.
const (
	insertUser = `INSERT INTO users (name, email, password_hash, role, created_at, updated_at)
	 VALUES ($1, $2, 'hash', $3, now(), now())`
	insertProduct = `INSERT INTO products (name, description, price, stock, created_at, updated_at)
	 VALUES ($1, $2, $3, $4, now(), now())`
	insertOrder = `INSERT INTO orders (user_id, total, status, created_at, updated_at)
	 VALUES ($1, $2, $3, now(), now())`
	insertItem           = `INSERT INTO order_items (order_id, product_id, quantity, price) VALUES ($1, $2, $3, $4)`
	insertNotification   = `INSERT INTO notifications (order_id, event_type, message, created_at) VALUES ($1, $2, 'm', now())`
	insertIdempotencyKey = `INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at)
	 VALUES ($1, $2, repeat('0', 64), $3, now())`
	insertOutbox = `INSERT INTO outbox (event_id, event_type, routing_key, payload, attempts, created_at)
	 VALUES ($1, 'OrderCreated', 'order.created', '{}', $2, now())`
)

// long is a string of n characters, for the length CHECKs, whose limits are domain's.
func long(n int) string { return strings.Repeat("a", n) }

// email is an e-mail address of n characters.
func email(n int) string { return long(n-len("@x.io")) + "@x.io" }

type violation struct {
	sql  string
	args []any
	code string
	// constraint is the name PostgreSQL reports.
	constraint string
}

// violations are the cases of TestConstraints, at least one for each constraint and unique
// index (TestEveryConstraintHasACase).
func violations() map[string]violation {
	return map[string]violation{
		// users
		"users_name_length empty":          {insertUser, []any{"", "e1@x.io", "customer"}, checkViolation, "users_name_length"},
		"users_name_length too long":       {insertUser, []any{long(domain.MaxNameLength + 1), "e2@x.io", "customer"}, checkViolation, "users_name_length"},
		"users_email_length":               {insertUser, []any{"Bo", email(domain.MaxEmailLength + 1), "customer"}, checkViolation, "users_email_length"},
		"users_email_lower":                {insertUser, []any{"Bo", "Bo@x.io", "customer"}, checkViolation, "users_email_lower"},
		"users_role_valid":                 {insertUser, []any{"Bo", "bo@x.io", "root"}, checkViolation, "users_role_valid"},
		"users_email_key":                  {insertUser, []any{"Ada Two", "ada@x.io", "customer"}, uniqueViolation, "users_email_key"},
		"users email unique ignoring case": {insertUser, []any{"Ada Two", "ADA@x.io", "customer"}, checkViolation, "users_email_lower"},
		"users_token_version_non_negative": {
			`UPDATE users SET token_version = -1 WHERE id = 1001`, nil, checkViolation, "users_token_version_non_negative"},
		// products
		"products_name_length empty":    {insertProduct, []any{"", nil, "1.00", 1}, checkViolation, "products_name_length"},
		"products_name_length too long": {insertProduct, []any{long(domain.MaxNameLength + 1), nil, "1.00", 1}, checkViolation, "products_name_length"},
		"products_description_length":   {insertProduct, []any{"P", long(domain.MaxDescriptionLength + 1), "1.00", 1}, checkViolation, "products_description_length"},
		"products_price_non_negative":   {insertProduct, []any{"P", nil, "-0.01", 1}, checkViolation, "products_price_non_negative"},
		"products_stock_non_negative":   {insertProduct, []any{"P", nil, "1.00", -1}, checkViolation, "products_stock_non_negative"},
		"products_stock_non_negative oversell": {
			`UPDATE products SET stock = stock - 6 WHERE id = 1001`, nil, checkViolation, "products_stock_non_negative"},
		// orders
		"orders_total_non_negative": {insertOrder, []any{1001, "-1.00", "pending"}, checkViolation, "orders_total_non_negative"},
		"orders_status_valid":       {insertOrder, []any{1001, "1.00", "unknown"}, checkViolation, "orders_status_valid"},
		"orders.user_id references users": {
			insertOrder, []any{999999, "1.00", "pending"}, foreignKeyViolation, "orders_users_orders"},
		"orders.user_id keeps users with orders": {
			`DELETE FROM users WHERE id = 1001`, nil, foreignKeyViolation, "orders_users_orders"},
		// order_items
		"order_items_quantity_positive":  {insertItem, []any{1001, 1001, 0, "1.00"}, checkViolation, "order_items_quantity_positive"},
		"order_items_price_non_negative": {insertItem, []any{1001, 1001, 1, "-1.00"}, checkViolation, "order_items_price_non_negative"},
		"order_items.order_id references orders": {
			insertItem, []any{999999, 1001, 1, "1.00"}, foreignKeyViolation, "order_items_orders_items"},
		"order_items.product_id references products": {
			insertItem, []any{1001, 999999, 1, "1.00"}, foreignKeyViolation, "order_items_products_order_items"},
		"order_items.product_id restricts product deletion": {
			`DELETE FROM products WHERE id = 1001`, nil, foreignKeyViolation, "order_items_products_order_items"},
		// notifications
		"notifications_event_type_valid": {
			insertNotification, []any{1001, "OrderUnknown"}, checkViolation, "notifications_event_type_valid"},
		"notifications unique (order_id, event_type)": {
			insertNotification, []any{1001, "OrderCreated"}, uniqueViolation, "notification_order_id_event_type"},
		"notifications.order_id references orders": {
			insertNotification, []any{999999, "OrderCreated"}, foreignKeyViolation, "notifications_orders_notifications"},
		// outbox
		"outbox_attempts_non_negative": {
			insertOutbox, []any{"00000000-0000-0000-0000-000000000002", -1}, checkViolation, "outbox_attempts_non_negative"},
		"outbox event_id unique": {
			insertOutbox, []any{"00000000-0000-0000-0000-000000000001", 0}, uniqueViolation, "outbox_event_id_key"},
		// idempotency_keys
		"idempotency_keys_key_length empty": {
			insertIdempotencyKey, []any{1001, "", 1001}, checkViolation, "idempotency_keys_key_length"},
		"idempotency_keys_key_length too long": {
			// 255: the contract's maxLength of Idempotency-Key (openapi.yaml), which domain does not state.
			insertIdempotencyKey, []any{1001, long(256), 1001}, checkViolation, "idempotency_keys_key_length"},
		"idempotency_keys unique (user_id, key)": {
			insertIdempotencyKey, []any{1001, "k1", 1001}, uniqueViolation, "idempotencykey_user_id_key"},
		"idempotency_keys.user_id references users": {
			insertIdempotencyKey, []any{999999, "k2", 1001}, foreignKeyViolation, "idempotency_keys_users_idempotency_keys"},
		"idempotency_keys.order_id references orders": {
			insertIdempotencyKey, []any{1001, "k2", 999999}, foreignKeyViolation, "idempotency_keys_orders_idempotency_keys"},
	}
}

// TestConstraints runs one subtest per case of violations. Each inserts the valid fixtures,
// then a row that breaks exactly that constraint, in a transaction that is rolled back.
func TestConstraints(t *testing.T) {
	db := open(t, testenv.Database(t).DSN())
	for name, c := range violations() {
		t.Run(name, func(t *testing.T) {
			inTx(t, db, func(tx *sql.Tx) {
				_, err := tx.Exec(c.sql, c.args...)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) {
					t.Fatalf("statement was not rejected by PostgreSQL: err = %v", err)
				}
				if pgErr.Code != c.code || pgErr.ConstraintName != c.constraint {
					t.Fatalf("rejected with SQLSTATE %s by %q (%s), want %s by %q",
						pgErr.Code, pgErr.ConstraintName, pgErr.Message, c.code, c.constraint)
				}
			})
		})
	}
}

// TestEveryConstraintHasACase: each CHECK, foreign key and unique constraint or index of the
// migrated database is broken by a case of violations, so that a new one is tested too.
func TestEveryConstraintHasACase(t *testing.T) {
	db := open(t, testenv.Database(t).DSN())
	rows, err := db.Query(`SELECT conrelid::regclass::text, conname FROM pg_constraint
WHERE connamespace = 'public'::regnamespace AND contype IN ('c', 'f', 'u')
UNION
SELECT c.relname, i.relname FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
WHERE x.indisunique AND NOT x.indisprimary AND c.relnamespace = 'public'::regnamespace
  AND c.relname <> 'atlas_schema_revisions'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	tested := map[string]bool{}
	for _, c := range violations() {
		tested[c.constraint] = true
	}
	n := 0
	for rows.Next() {
		var table, name string
		if err := rows.Scan(&table, &name); err != nil {
			t.Fatal(err)
		}
		n++
		if !tested[name] {
			t.Errorf("%s.%s: no case of violations() breaks it (constraints_test.go); add one, and a valid row to TestConstraintsAcceptValidRows", table, name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the database has no constraints: the query found nothing")
	}
}

// TestConstraintsAcceptValidRows makes sure the cases above fail because of the one value
// they break: the same statements with valid values pass.
func TestConstraintsAcceptValidRows(t *testing.T) {
	db := open(t, testenv.Database(t).DSN())
	inTx(t, db, func(tx *sql.Tx) {
		for _, s := range []violation{
			{sql: insertUser, args: []any{long(domain.MaxNameLength), email(domain.MaxEmailLength), "admin"}},
			{sql: `UPDATE users SET token_version = 0 WHERE id = 1001`},
			{sql: insertProduct, args: []any{long(domain.MaxNameLength), long(domain.MaxDescriptionLength), "0.00", 0}},
			{sql: `UPDATE products SET stock = stock - 5 WHERE id = 1001`},
			{sql: insertOrder, args: []any{1001, "0.00", "expired"}},
			{sql: insertItem, args: []any{1001, 1001, 1, "0.00"}},
			{sql: insertNotification, args: []any{1001, "OrderExpired"}},
			{sql: insertOutbox, args: []any{"00000000-0000-0000-0000-000000000002", 0}},
			{sql: insertIdempotencyKey, args: []any{1001, "k2", 1001}},
			{sql: insertIdempotencyKey, args: []any{1001, long(255), 1001}},
		} {
			if _, err := tx.Exec(s.sql, s.args...); err != nil {
				t.Fatalf("valid row rejected: %s %v: %v", s.sql, s.args, err)
			}
		}
	})
}

// TestDeletingAnOrderCascades checks the ON DELETE CASCADE of order_items.order_id,
// notifications.order_id and idempotency_keys.order_id.
func TestDeletingAnOrderCascades(t *testing.T) {
	db := open(t, testenv.Database(t).DSN())
	inTx(t, db, func(tx *sql.Tx) {
		if _, err := tx.Exec(`DELETE FROM orders WHERE id = 1001`); err != nil {
			t.Fatalf("delete order: %v", err)
		}
		for _, table := range []string{"order_items", "notifications", "idempotency_keys"} {
			var n int
			if err := tx.QueryRow(`SELECT count(*) FROM ` + table + ` WHERE order_id = 1001`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%d %s rows of the deleted order remain, want 0", n, table)
			}
		}
		var products int
		if err := tx.QueryRow(`SELECT count(*) FROM products WHERE id = 1001`).Scan(&products); err != nil || products != 1 {
			t.Errorf("product of the deleted order: %d rows, %v; want it kept", products, err)
		}
	})
}

// inTx inserts the fixtures and runs fn in a transaction that is always rolled back.
func inTx(t *testing.T, db *sql.DB, fn func(tx *sql.Tx)) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, f := range fixtures {
		if _, err := tx.Exec(f); err != nil {
			t.Fatalf("fixture %s: %v", f, err)
		}
	}
	fn(tx)
}
