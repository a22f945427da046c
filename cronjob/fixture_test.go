package cronjob

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"orderflow/configuration"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// itemPrice is the unit price of every fixture order line.
var itemPrice = decimal.RequireFromString("12.34")

// env is one test's own migrated database.
type env struct {
	cfg  configuration.Database
	pool *sql.DB
}

func newEnv(t testing.TB) env {
	t.Helper()
	cfg := testenv.Database(t)
	return env{cfg: cfg, pool: testenv.Pool(t, cfg)}
}

// holdProduct locks product in a transaction of its own, as a client that does not end it
// would, and returns the transaction; the test's end rolls it back, if the test did not.
func (e env) holdProduct(t testing.TB, product int64) *sql.Tx {
	t.Helper()
	tx, err := e.pool.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	if _, err := tx.Exec(`SELECT 1 FROM products WHERE id = $1 FOR UPDATE`, product); err != nil {
		t.Fatal(err)
	}
	return tx
}

func (e env) exec(t testing.TB, query string, args ...any) {
	t.Helper()
	if _, err := e.pool.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func (e env) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (e env) user(t testing.TB) int64 {
	t.Helper()
	var id int64
	err := e.pool.QueryRowContext(context.Background(), `
		INSERT INTO users (created_at, updated_at, name, email, password_hash, role)
		VALUES (now(), now(), 'Expiry Test', 'expiry-' || gen_random_uuid() || '@example.com', 'x', 'customer')
		RETURNING id`).Scan(&id)
	if err != nil {
		t.Fatalf("insert user: %v", err)
	}
	return id
}

// products inserts n products with the given stock and returns their ids in ascending order.
func (e env) products(t testing.TB, n, stock int) []int64 {
	t.Helper()
	rows, err := e.pool.QueryContext(context.Background(), `
		INSERT INTO products (created_at, updated_at, name, price, stock)
		SELECT now(), now(), 'Product ' || g, $2, $3 FROM generate_series(1, $1) g
		RETURNING id`, n, itemPrice, stock)
	if err != nil {
		t.Fatalf("insert products: %v", err)
	}
	return testutil.Column[int64](t, rows)
}

// orders inserts n orders of user in status, created age ago by the database clock, and
// returns their ids. Order id has two lines: quantity id%3+1 of products[id%len] and
// quantity 2 of products[(id+1)%len], both at itemPrice; its total is their sum.
func (e env) orders(t testing.TB, n int, status string, age time.Duration, user int64, products []int64) []int64 {
	t.Helper()
	rows, err := e.pool.QueryContext(context.Background(), `
		WITH ids AS MATERIALIZED (
			SELECT nextval(pg_get_serial_sequence('orders', 'id')) AS id FROM generate_series(1, $1)
		), o AS (
			INSERT INTO orders (id, created_at, updated_at, total, status, user_id)
			SELECT id, now() - $2 * interval '1 microsecond', now(), (id % 3 + 3) * $6::numeric, $3, $4 FROM ids
			RETURNING id
		), items AS (
			INSERT INTO order_items (order_id, product_id, quantity, price)
			SELECT id, ($5::bigint[])[id % cardinality($5::bigint[]) + 1], id % 3 + 1, $6 FROM ids
			UNION ALL
			SELECT id, ($5::bigint[])[(id + 1) % cardinality($5::bigint[]) + 1], 2, $6 FROM ids
		)
		SELECT id FROM o ORDER BY id`,
		n, age.Microseconds(), status, user, products, itemPrice)
	if err != nil {
		t.Fatalf("insert orders: %v", err)
	}
	return testutil.Column[int64](t, rows)
}

// released returns, per product, the quantity that expiring the orders ids gives back,
// computed from the fixture's rule rather than from the database.
func released(ids []int64, products []int64) map[int64]int {
	m := map[int64]int{}
	for _, id := range ids {
		m[products[id%int64(len(products))]] += int(id%3 + 1)
		m[products[(id+1)%int64(len(products))]] += 2
	}
	return m
}

// total is the fixture total of order id.
func total(id int64) decimal.Decimal {
	return itemPrice.Mul(decimal.NewFromInt(id%3 + 3))
}

func (e env) stocks(t testing.TB) map[int64]int {
	t.Helper()
	rows, err := e.pool.QueryContext(context.Background(), `SELECT id, stock FROM products`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[int64]int{}
	for rows.Next() {
		var id int64
		var stock int
		if err := rows.Scan(&id, &stock); err != nil {
			t.Fatal(err)
		}
		m[id] = stock
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func (e env) statuses(t testing.TB, ids []int64) map[string]int {
	t.Helper()
	rows, err := e.pool.QueryContext(context.Background(),
		`SELECT status, count(*) FROM orders WHERE id = ANY($1) GROUP BY status`, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		m[s] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// outboxRow is one decoded outbox row.
type outboxRow struct {
	noHeaders  bool
	payload    []byte
	eventID    string
	eventType  string
	routingKey string
	env        events.Envelope
	event      events.Event
}

func (e env) outbox(t testing.TB) []outboxRow {
	t.Helper()
	rows, err := e.pool.QueryContext(context.Background(),
		`SELECT event_id, event_type, routing_key, payload, headers IS NULL FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.eventID, &r.eventType, &r.routingKey, &r.payload, &r.noHeaders); err != nil {
			t.Fatal(err)
		}
		r.env, r.event, err = events.Decode(r.payload)
		if err != nil {
			t.Fatalf("outbox row %s: %v", r.eventID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func ordersConfig(expireAfter time.Duration, batch int) configuration.Orders {
	o := configuration.Defaults().Orders
	o.ExpireAfter = configuration.Duration(expireAfter)
	o.ExpiryBatchSize = batch
	return o
}
