package api

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/events"
	"orderflow/internal/testutil"
	"orderflow/platform/outbox"
)

// TestInsertOrderLocksInDatabase places orders concurrently through two intakes and
// without this process's stock locks, as two API processes would, so that groups share
// products with each other and within themselves: orders for the same two products, listed
// in either order, never deadlock, reserve exactly the stock there is, and write one outbox
// row per stored order and none for a refused one.
func TestInsertOrderLocksInDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, custID := e.customer()
	a, b := e.product("1.00", 30), e.product("2.50", 30)

	const orders = 40
	intakes := []*intake{newIntake(e.db, e.h.log, 2, 8), newIntake(e.db, e.h.log, 2, 8)}
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		stored, refused int
		failures        []error
	)
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			its := []domain.Item{{ProductID: a, Quantity: 1}, {ProductID: b, Quantity: 1}}
			if i%2 == 1 {
				its[0], its[1] = its[1], its[0]
			}
			now := e.h.now().Truncate(time.Microsecond)
			ev, err := outbox.NewEnvelopeRow(ctx, now, events.SourceAPI, events.TypeOrderCreated, events.RoutingKeyOrderCreated, nil)
			if err == nil {
				var o *oas.Order
				in := orderInput{callerID: custID, userID: custID, items: its, ids: productIDs(its), now: now, ev: ev}
				if o, err = intakes[i/2%2].store(&orderJob{ctx: ctx, orderInput: in}); err == nil && o == nil {
					err = explainRefusal(ctx, e.db, in)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				stored++
			case errors.Is(err, ErrInsufficientStock):
				refused++
			default:
				failures = append(failures, err)
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d orders failed otherwise, first: %v", len(failures), failures[0])
	}
	if stored != 30 || refused != orders-30 {
		t.Errorf("%d stored and %d refused, want 30 and %d", stored, refused, orders-30)
	}
	if e.stock(a) != 0 || e.stock(b) != 0 {
		t.Errorf("stock left %d and %d, want 0", e.stock(a), e.stock(b))
	}
	var rows, items, created int
	if err := e.db.QueryRow(`SELECT count(*), (SELECT count(*) FROM order_items WHERE product_id IN ($2, $3))
		FROM orders WHERE user_id = $1`, custID, a, b).Scan(&rows, &items); err != nil {
		t.Fatal(err)
	}
	if err := e.db.QueryRow(`SELECT count(*) FROM outbox
		WHERE event_type = $1 AND (payload->'data'->>'userId')::int = $2`, events.TypeOrderCreated, custID).Scan(&created); err != nil {
		t.Fatal(err)
	}
	if rows != 30 || items != 60 || created != 30 {
		t.Errorf("%d orders, %d items, %d OrderCreated rows stored; want 30, 60, 30", rows, items, created)
	}
}

// TestOrderStatementReadsOnlyItsProducts checks the plans of OrderStatement and
// GroupStatement on a thousand products and a thousand users, the size at which PostgreSQL
// would rather read a whole table than its index: neither the generic plan, which a
// prepared statement settles on, nor a custom plan reads all the products or all the users.
func TestOrderStatementReadsOnlyItsProducts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, cust := e.customer()
	if _, err := e.db.Exec(`INSERT INTO products (name, price, stock, created_at, updated_at)
		SELECT 'product ' || i, 1.00, 100, now(), now() FROM generate_series(1, 1000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(`INSERT INTO users (name, email, password_hash, role, created_at, updated_at)
		SELECT 'user ' || i, 'user' || i || '@example.com', 'x', 'customer', now(), now() FROM generate_series(1, 1000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(`VACUUM ANALYZE products, users`); err != nil {
		t.Fatal(err)
	}
	var a, b int
	if err := e.db.QueryRow(`SELECT min(id), max(id) FROM products`).Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, st := range []struct{ name, prepare, explain string }{
		{
			"OrderStatement",
			`PREPARE order_statement(bigint, bigint, bigint[], bigint[], timestamptz, numeric, uuid, text, text,
				jsonb, jsonb, text, text, bigint) AS ` + OrderStatement,
			fmt.Sprintf(`EXPLAIN EXECUTE order_statement(%d, %d, '{%d,%d}', '{1,1}', now(), %s,
				gen_random_uuid(), 'OrderCreated', 'order.created', '{"data": null}', NULL, '', 'admin', 0)`, cust, cust, a, b, maxTotal),
		},
		{
			"GroupStatement",
			`PREPARE group_statement(bigint[], bigint[], timestamptz[], uuid[], text[], text[], text[], text[], text[],
				bigint[], bigint[], bigint[], numeric, text, bigint[]) AS ` + GroupStatement,
			fmt.Sprintf(`EXPLAIN EXECUTE group_statement('{%[1]d,%[1]d}', '{%[1]d,%[1]d}', ARRAY[now(), now()],
				ARRAY[gen_random_uuid(), gen_random_uuid()], '{OrderCreated,OrderCreated}', '{order.created,order.created}',
				ARRAY['{"data": null}', '{"data": null}'], '{NULL,NULL}', '{"",""}', '{1,1,2}', '{%[2]d,%[3]d,%[2]d}', '{1,1,1}',
				%[4]s, 'admin', '{0,0}')`, cust, a, b, maxTotal),
		},
	} {
		if _, err := conn.ExecContext(ctx, st.prepare); err != nil {
			t.Fatal(err)
		}
		for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
			if _, err := conn.ExecContext(ctx, `SET plan_cache_mode = `+mode); err != nil {
				t.Fatal(err)
			}
			rows, err := conn.QueryContext(ctx, st.explain)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(testutil.Column[string](t, rows), "\n")
			for _, table := range []string{"products", "users"} {
				if strings.Contains(text, "Seq Scan on "+table) {
					t.Errorf("%s, %s: the plan reads all the %s:\n%s", st.name, mode, table, text)
				}
			}
		}
	}
}
