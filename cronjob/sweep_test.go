package cronjob

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow/ent"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
)

func TestSweepExpiresOnlyStaleProcessingOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := e.user(t)
	staleProducts := e.products(t, 2, 1000)
	otherProducts := e.products(t, 3, 1000)

	stale := e.orders(t, 7, "processing", time.Hour, user, staleProducts)
	untouched := map[string][]int64{
		"processing": e.orders(t, 4, "processing", 9*time.Minute, user, otherProducts),
		"pending":    e.orders(t, 3, "pending", time.Hour, user, otherProducts),
		"completed":  e.orders(t, 3, "completed", time.Hour, user, otherProducts),
		"expired":    e.orders(t, 2, "expired", time.Hour, user, otherProducts),
	}
	before := e.stocks(t)

	// A batch size of 3 makes the 7 stale orders take three batches.
	s := NewSweeper(e.pool, ordersConfig(10*time.Minute, 3))
	ctx := sweepContext(t)
	var dbStart, dbEnd time.Time
	if err := e.pool.QueryRowContext(ctx, `SELECT now()`).Scan(&dbStart); err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.pool.QueryRowContext(ctx, `SELECT now()`).Scan(&dbEnd); err != nil {
		t.Fatal(err)
	}
	if res.Expired != 7 || res.Batches != 3 {
		t.Errorf("result %+v, want 7 expired in 3 batches", res)
	}
	if got := e.statuses(t, stale); got["expired"] != 7 || len(got) != 1 {
		t.Errorf("stale processing orders: %v, want all 7 expired", got)
	}
	for status, ids := range untouched {
		if got := e.statuses(t, ids); got[status] != len(ids) || len(got) != 1 {
			t.Errorf("%s orders: %v, want all %d still %s", status, got, len(ids), status)
		}
	}

	after := e.stocks(t)
	want := released(stale, staleProducts)
	for id, stock := range after {
		if diff := stock - before[id]; diff != want[id] {
			t.Errorf("product %d: stock went from %d to %d, want %d released", id, before[id], stock, want[id])
		}
	}

	rows := e.outbox(t)
	if len(rows) != len(stale) {
		t.Fatalf("%d outbox rows, want %d", len(rows), len(stale))
	}
	seen := map[int64]bool{}
	for _, r := range rows {
		ev, ok := r.event.(events.OrderExpired)
		if !ok {
			t.Fatalf("outbox row %s holds %T, want OrderExpired", r.eventID, r.event)
		}
		if r.eventType != events.TypeOrderExpired || r.routingKey != events.RoutingKeyOrderExpired {
			t.Errorf("row %s: type %q key %q", r.eventID, r.eventType, r.routingKey)
		}
		if r.env.Source != events.SourceCronJob || r.env.ID != r.eventID {
			t.Errorf("row %s: envelope source %q id %q", r.eventID, r.env.Source, r.env.ID)
		}
		id := int64(ev.OrderID)
		if seen[id] {
			t.Errorf("order %d has two events", id)
		}
		seen[id] = true
		if int64(ev.UserID) != user {
			t.Errorf("order %d: userId %d, want %d", id, ev.UserID, user)
		}
		if !ev.Total.Equal(total(id)) {
			t.Errorf("order %d: total %s, want %s", id, ev.Total.StringFixed(2), total(id).StringFixed(2))
		}
		if ev.ExpiredAt.Before(dbStart) || ev.ExpiredAt.After(dbEnd) {
			t.Errorf("order %d: expiredAt %s outside the run [%s, %s]", id, ev.ExpiredAt, dbStart, dbEnd)
		}
		if ev.ExpiredAfter != "10m0s" {
			t.Errorf("order %d: expiredAfter %q, want 10m0s", id, ev.ExpiredAfter)
		}
	}
	for _, id := range stale {
		if !seen[id] {
			t.Errorf("order %d has no event", id)
		}
	}

	// A second run finds nothing and writes nothing.
	res, err = s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Expired != 0 || res.Batches != 0 {
		t.Errorf("second run %+v, want nothing expired", res)
	}
	if n := e.count(t, `SELECT count(*) FROM outbox`); n != len(stale) {
		t.Errorf("%d outbox rows after the second run, want %d", n, len(stale))
	}
}

func TestSweepBatchIsAllOrNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := e.user(t)
	products := e.products(t, 2, 50)
	stale := e.orders(t, 10, "processing", time.Hour, user, products)
	before := e.stocks(t)

	// The outbox refuses expiry events, so the batch must roll back: no order expired and
	// no stock released without its event.
	e.exec(t, `ALTER TABLE outbox ADD CONSTRAINT reject_expired CHECK (event_type <> '`+events.TypeOrderExpired+`')`)
	s := NewSweeper(e.pool, ordersConfig(time.Minute, 500))
	res, err := s.Run(sweepContext(t))
	if err == nil || !strings.Contains(err.Error(), "reject_expired") {
		t.Fatalf("run error %v, want the outbox constraint violation", err)
	}
	if res.Expired != 0 {
		t.Errorf("failed run reports %d expired", res.Expired)
	}
	if got := e.statuses(t, stale); got["processing"] != len(stale) {
		t.Errorf("after the failed run: %v, want all processing", got)
	}
	for id, stock := range e.stocks(t) {
		if stock != before[id] {
			t.Errorf("product %d: stock %d after the failed run, want %d", id, stock, before[id])
		}
	}

	e.exec(t, `ALTER TABLE outbox DROP CONSTRAINT reject_expired`)
	res, err = s.Run(sweepContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Expired != len(stale) {
		t.Errorf("retry expired %d, want %d", res.Expired, len(stale))
	}
	if n := e.count(t, `SELECT count(*) FROM outbox`); n != len(stale) {
		t.Errorf("%d outbox rows, want %d", n, len(stale))
	}
}

// Three sweepers share a backlog while orders keep being taken, the way the API takes them
// (products locked in id order, stock reserved, order and lines inserted): every stale order
// is expired once, with one event, and no transaction deadlocks.
func TestSweepConcurrentSweepersExpireEachOrderOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := e.user(t)
	const initialStock = 1_000_000
	products := e.products(t, 5, initialStock)
	const n = 10_000
	stale := e.orders(t, n, "processing", time.Hour, user, products)
	e.exec(t, `ANALYZE`)

	const sweepers, takers = 3, 2
	results := make([]Result, sweepers)
	errs := make([]error, sweepers+takers)
	reserved := make([]map[int64]int, takers)
	start, swept := make(chan struct{}), make(chan struct{})
	var sweeping, taking sync.WaitGroup
	for i := range sweepers {
		// Each sweeper has its own pool, as separate processes would.
		other := e.pool
		if i > 0 {
			other = testenv.Pool(t, e.cfg)
		}
		s := NewSweeper(other, ordersConfig(time.Minute, 200))
		sweeping.Go(func() {
			<-start
			results[i], errs[i] = s.Run(sweepContext(t))
		})
	}
	for i := range takers {
		pool := testenv.Pool(t, e.cfg)
		reserved[i] = map[int64]int{}
		taking.Go(func() {
			<-start
			for k := i; ; k++ {
				select {
				case <-swept:
					return
				default:
				}
				pair := []int64{products[k%len(products)], products[(k+1+i)%len(products)]}
				if pair[0] == pair[1] {
					pair = pair[:1]
				}
				if err := takeOrder(pool, user, pair); err != nil {
					errs[sweepers+i] = err
					return
				}
				for _, p := range pair {
					reserved[i][p]++
				}
			}
		})
	}
	close(start)
	sweeping.Wait()
	close(swept)
	taking.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("transaction %d: %v", i, err)
		}
	}
	sum := 0
	for i := range sweepers {
		sum += results[i].Expired
		t.Logf("sweeper %d: %+v", i, results[i])
	}
	if sum != n {
		t.Errorf("sweepers expired %d orders together, want %d", sum, n)
	}
	if got := e.statuses(t, stale); got["expired"] != n {
		t.Errorf("statuses %v, want %d expired", got, n)
	}
	if got := e.count(t, `SELECT count(*) FROM outbox`); got != n {
		t.Errorf("%d outbox rows, want %d", got, n)
	}
	if got := e.count(t, `SELECT count(DISTINCT payload->'data'->'orderId') FROM outbox`); got != n {
		t.Errorf("%d distinct orders in the outbox, want %d", got, n)
	}
	taken := e.count(t, `SELECT count(*) FROM orders WHERE status = 'pending'`)
	t.Logf("%d orders taken meanwhile", taken)
	want := released(stale, products)
	stocks := e.stocks(t)
	for _, id := range products {
		w := initialStock + want[id] - reserved[0][id] - reserved[1][id]
		if stocks[id] != w {
			t.Errorf("product %d: stock %d, want %d", id, stocks[id], w)
		}
	}
}

// TestSweepLeavesTheOrdersOfAProductHeldLong: a transaction that holds a product (a client
// gone without closing its connection, a session left open) makes the batch that waits for
// it give up after the sweeper's lockWait and run again skipping it, and the batches after
// it wait only heldProductWait for a product: the orders without that product expire, those with it
// stay processing for the next run, and the run waits lockWait for the product once, however
// many of its batches have it.
func TestSweepLeavesTheOrdersOfAProductHeldLong(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := e.user(t)
	products := e.products(t, 3, 1000) // a, held, c
	a, held, c := products[:1], products[1:2], products[2:]
	var blocked, free []int64
	for i, age := range []time.Duration{6 * time.Hour, 5 * time.Hour, 4 * time.Hour, 3 * time.Hour, 2 * time.Hour, time.Hour} {
		if i%2 == 0 {
			blocked = append(blocked, e.orders(t, 1, "processing", age, user, []int64{a[0], held[0]})...)
		} else {
			free = append(free, e.orders(t, 1, "processing", age, user, a)...)
		}
	}
	free = append(free, e.orders(t, 3, "processing", time.Hour, user, c)...)
	before := e.stocks(t)

	ctx := sweepContext(t)
	holder := e.holdProduct(t, held[0])
	// Batches of 2: the held product is in the first three batches.
	s := NewSweeper(testenv.Pool(t, e.cfg), ordersConfig(10*time.Minute, 2))
	s.lockWait = 300 * time.Millisecond
	var waits []time.Duration
	s.onLockTimeout = func(waited time.Duration) { waits = append(waits, waited) }
	runCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := s.Run(runCtx)
	if err != nil {
		t.Fatalf("run with a product held: %v", err)
	}
	if res.Expired != len(free) || res.Skipped != len(blocked) {
		t.Errorf("result %+v, want %d expired and %d skipped", res, len(free), len(blocked))
	}
	if want := []time.Duration{s.lockWait, heldProductWait, heldProductWait}; !slices.Equal(waits, want) {
		t.Errorf("the batches with the held product waited %v, want %v", waits, want)
	}
	if got := e.statuses(t, blocked); got["processing"] != len(blocked) {
		t.Errorf("the orders of the held product: %v, want processing", got)
	}
	if got := e.statuses(t, free); got["expired"] != len(free) {
		t.Errorf("the other orders: %v, want all %d expired", got, len(free))
	}
	want := released(free[:3], a)
	for id, n := range released(free[3:], c) {
		want[id] += n
	}
	after := e.stocks(t)
	for _, id := range products {
		if diff := after[id] - before[id]; diff != want[id] {
			t.Errorf("product %d: %d released, want %d", id, diff, want[id])
		}
	}
	if n := e.count(t, `SELECT count(*) FROM outbox`); n != len(free) {
		t.Errorf("%d outbox rows, want %d", n, len(free))
	}

	// Once the product is free, the next run expires its orders.
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Run(ctx); err != nil || res.Expired != len(blocked) || res.Skipped != 0 {
		t.Fatalf("next run: %+v, %v; want the %d orders expired", res, err, len(blocked))
	}
	if got := e.statuses(t, blocked); got["expired"] != len(blocked) {
		t.Errorf("the orders of the released product: %v, want expired", got)
	}
}

// takeOrder places a pending order for one unit of each product as the API does: products
// locked in id order, stock reserved on condition, order and lines inserted, one transaction.
func takeOrder(pool *sql.DB, user int64, products []int64) error {
	ctx := context.Background()
	tx, err := pool.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT id FROM products WHERE id = ANY($1) ORDER BY id FOR UPDATE`, products); err != nil {
		return fmt.Errorf("lock products: %w", err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE products SET stock = stock - 1, updated_at = now() WHERE id = ANY($1) AND stock >= 1`, products)
	if err != nil {
		return fmt.Errorf("reserve stock: %w", err)
	}
	if n, _ := res.RowsAffected(); n != int64(len(products)) {
		return fmt.Errorf("reserved %d of %d products", n, len(products))
	}
	if _, err := tx.ExecContext(ctx, `
		WITH o AS (
			INSERT INTO orders (created_at, updated_at, total, status, user_id)
			VALUES (now(), now(), $3::numeric * cardinality($2::bigint[]), 'pending', $1) RETURNING id
		)
		INSERT INTO order_items (order_id, product_id, quantity, price)
		SELECT o.id, p, 1, $3::numeric FROM o, unnest($2::bigint[]) p`, user, products, itemPrice); err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	return tx.Commit()
}

func TestSweepClears100kOrdersInOneRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user := e.user(t)
	products := e.products(t, 20, 0)
	const n = 100_000
	stale := e.orders(t, n, "processing", time.Hour, user, products)
	e.exec(t, `ANALYZE`)

	res, err := NewSweeper(e.pool, ordersConfig(time.Minute, 500)).Run(sweepContext(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("expired %d orders in %d batches in %s", res.Expired, res.Batches, res.Duration)
	if res.Expired != n || res.Batches != n/500 {
		t.Errorf("result %+v, want %d expired in %d batches", res, n, n/500)
	}
	if got := e.count(t, `SELECT count(*) FROM orders WHERE status = 'processing'`); got != 0 {
		t.Errorf("%d orders still processing", got)
	}
	if got := e.count(t, `SELECT count(*) FROM outbox WHERE event_type = $1`, events.TypeOrderExpired); got != n {
		t.Errorf("%d OrderExpired outbox rows, want %d", got, n)
	}
	units := 0
	for _, q := range released(stale, products) {
		units += q
	}
	if got := e.count(t, `SELECT sum(stock) FROM products WHERE id = ANY($1)`, products); got != units {
		t.Errorf("%d units released, want %d", got, units)
	}
}

// The sweep builds its outbox rows in SQL; they must be the rows outbox.WriteBatch would
// have written for the same events.
func TestSweepWritesTheRowsTheOutboxWriterWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.orders(t, 2, "processing", time.Hour, e.user(t), e.products(t, 2, 0))
	if _, err := NewSweeper(e.pool, ordersConfig(time.Minute, 500)).Run(sweepContext(t)); err != nil {
		t.Fatal(err)
	}
	swept := e.outbox(t)
	if len(swept) != 2 {
		t.Fatalf("%d outbox rows, want 2", len(swept))
	}
	evs := []events.Event{swept[0].event, swept[1].event}
	err := db.WithTx(context.Background(), db.NewClient(e.pool), func(tx *ent.Tx) error {
		_, err := outbox.WriteBatch(context.Background(), tx, events.SourceCronJob, evs, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	all := e.outbox(t)
	if len(all) != 4 {
		t.Fatalf("%d outbox rows, want 4", len(all))
	}
	for i, want := range all[2:] {
		got := swept[i]
		if got.eventType != want.eventType || got.routingKey != want.routingKey || got.noHeaders != want.noHeaders {
			t.Errorf("row %d: type %q key %q no headers %v; writer: %q %q %v", i,
				got.eventType, got.routingKey, got.noHeaders, want.eventType, want.routingKey, want.noHeaders)
		}
		ge, we := got.event.(events.OrderExpired), want.event.(events.OrderExpired)
		if ge.OrderID != we.OrderID || ge.UserID != we.UserID || !ge.Total.Equal(we.Total.Decimal) ||
			!ge.ExpiredAt.Equal(we.ExpiredAt) || ge.ExpiredAfter != we.ExpiredAfter {
			t.Errorf("row %d: event %+v, writer's %+v", i, got.event, want.event)
		}
		g, w := got.env, want.env
		if g.SpecVersion != w.SpecVersion || g.Source != w.Source || g.Type != w.Type || g.DataContentType != w.DataContentType {
			t.Errorf("row %d: envelope %+v, writer's %+v", i, g, w)
		}
		for _, id := range []string{got.eventID, want.eventID} {
			if u, err := uuid.Parse(id); err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 {
				t.Errorf("event id %s is not a version 7 UUID (%v)", id, err)
			}
		}
		if d := w.Time.Sub(g.Time); d < 0 || d > time.Minute {
			t.Errorf("row %d: envelope time %s, writer's %s", i, g.Time, w.Time)
		}
		// Same attributes and data fields, in the same JSON types.
		if gs, ws := shape(t, got.payload), shape(t, want.payload); gs != ws {
			t.Errorf("row %d: payload shape\n%s\nwriter's\n%s", i, gs, ws)
		}
	}
}

// shape describes a JSON document by its keys and value types, recursively.
func shape(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var describe func(v any) string
	describe = func(v any) string {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("%T", v)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + describe(m[k])
		}
		return "{" + strings.Join(parts, " ") + "}"
	}
	return describe(v)
}

// sweepContext bounds a test's sweep: a sweep that expired the same orders again and again
// would otherwise run until the package's timeout, naming no test.
func sweepContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestSweepDoesNotTurnAProductsUpdatedAtBack: the sweep stamps the products it releases stock
// to with its transaction's start; a product changed after that start, before the sweep got
// its lock, keeps its later updated_at.
func TestSweepDoesNotTurnAProductsUpdatedAtBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	products := e.products(t, 2, 1000)
	e.orders(t, 2, "processing", time.Hour, e.user(t), products)
	e.exec(t, `UPDATE products SET updated_at = now() + interval '1 hour' WHERE id = $1`, products[0])
	e.exec(t, `UPDATE products SET updated_at = now() - interval '1 hour' WHERE id = $1`, products[1])
	var later time.Time
	if err := e.pool.QueryRow(`SELECT updated_at FROM products WHERE id = $1`, products[0]).Scan(&later); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if res, err := NewSweeper(e.pool, ordersConfig(10*time.Minute, 10)).Run(sweepContext(t)); err != nil || res.Expired != 2 {
		t.Fatalf("sweep: %+v, %v; want 2 expired", res, err)
	}
	var kept, stamped time.Time
	if err := e.pool.QueryRow(`SELECT (SELECT updated_at FROM products WHERE id = $1), (SELECT updated_at FROM products WHERE id = $2)`,
		products[0], products[1]).Scan(&kept, &stamped); err != nil {
		t.Fatal(err)
	}
	if !kept.Equal(later) {
		t.Errorf("product changed later than the sweep's start: updatedAt %v, want it kept at %v", kept, later)
	}
	if stamped.Before(before.Add(-time.Minute)) {
		t.Errorf("product released by the sweep: updatedAt %v, want the sweep's time", stamped)
	}
}
