package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"orderflow/ent"
	"orderflow/events"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
)

// runMemory reads the peak resident set (VmHWM) of the api after intake load at 16 clients
// and of the worker after a burst of orders: the orders and their OrderCreated events are
// written directly (one transaction), so the burst does not depend on how fast the API takes
// orders. How many of the burst's payments run at once, and how fast the worker begins
// them, is then up to the worker's limits.
func runMemory(ctx context.Context, r *runner) (res *Result, err error) {
	res = newResult()
	e, err := r.newEnv(ctx, "memory")
	if err != nil {
		return res, err
	}
	defer e.close()
	cat, err := e.fixture(ctx, r.size.history)
	if err != nil {
		return res, err
	}
	// The configured payment delay: how many payments are in flight at once is then up to
	// the worker's own limits, as in production.
	burst, delay := 5_000, r.size.paymentDelay
	if r.size.name == "tiny" {
		burst = 500
	}
	limit, err := paymentsLimit(r.set, burst)
	if err != nil {
		return res, err
	}
	overrides := map[string]string{
		"ORDERFLOW_ORDERS_PAYMENTDELAY":        delay.String(),
		"ORDERFLOW_ORDERS_MAXPAYMENTSINFLIGHT": strconv.Itoa(limit),
	}
	worker, err := e.start(ctx, "worker", overrides)
	if err != nil {
		return res, err
	}
	api, client, err := e.startAPI(ctx, overrides)
	if err != nil {
		return res, err
	}
	res.setup("api and worker processes, configuration defaults but orders.paymentDelay %s and orders.maxPaymentsInFlight %d (the worker's payments at once; %d by default; database.maxConns %d, runtime.memoryLimitMiB %d)",
		delay, limit, e.cfg.Orders.MaxPaymentsInFlight, e.cfg.Database.MaxConns, e.cfg.Runtime.MemoryLimitMiB)
	res.setup("api: 16 clients posting orders for %s; worker: then %d orders with their OrderCreated events written in one transaction",
		r.size.phase, burst)
	res.setup("the worker's peak goroutines and stacks: its go_goroutines and go_memstats_stack_inuse_bytes (stacks kept for reuse included), read every 50 ms from the api load's start to the burst's end")

	// Where the worker's memory goes: its goroutines and their stacks, read during the api's
	// load here, then by the waits below.
	var (
		loadOver     atomic.Bool
		loadReadings []progress
		watchErr     error
	)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		loadReadings, watchErr = follow(ctx, worker, time.Hour, func(progress) bool { return loadOver.Load() })
	}()
	load := closedLoop(ctx, 16, r.size.phase, func(ctx context.Context, rng *rand.Rand) error {
		return client.create(ctx, cat.orderBody(rng))
	})
	loadOver.Store(true)
	<-watched
	if watchErr != nil {
		return res, fmt.Errorf("the worker's metrics during the api's load: %w", watchErr)
	}
	if load.Errors > 0 {
		return res, fmt.Errorf("%d orders failed, first: %s", load.Errors, load.FirstError)
	}
	apiRSS, err := api.peakRSS()
	if err != nil {
		return res, err
	}
	// Let the load's own payments finish, so that the burst starts from an idle worker.
	idleReadings, err := follow(ctx, worker, 5*time.Minute, func(p progress) bool { return p.inFlight == 0 })
	if err != nil {
		return res, fmt.Errorf("payments of the intake load: %w", err)
	}
	before, err := readProgress(ctx, worker)
	if err != nil {
		return res, err
	}
	// The API's relay would publish its own orders' events as soon as they commit; the
	// benchmark's relay does that for the burst it writes.
	stopRelay, err := e.startRelay(ctx)
	if err != nil {
		return res, err
	}
	defer stopRelay()
	if err := writeOrders(ctx, e, cat, burst); err != nil {
		return res, err
	}
	written := time.Now()
	var posted int
	if err := e.pool.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'`).Scan(&posted); err != nil {
		return res, fmt.Errorf("count orders: %w", err)
	}
	readings, err := follow(ctx, worker, 5*time.Minute, func(p progress) bool { return p.decided() >= posted })
	if err != nil {
		return res, fmt.Errorf("payments: %w", err)
	}
	peak := 0
	var allBegun time.Time
	for _, p := range readings {
		peak = max(peak, p.inFlight)
		if allBegun.IsZero() && p.started()-before.started() >= burst {
			allBegun = p.at
		}
	}
	goroutines, stackMiB := runtimePeaks(loadReadings, idleReadings, readings)
	// How fast the worker takes up a backlog: the burst's payments begun per second.
	begunRate := float64(burst) / allBegun.Sub(written).Seconds()
	workerRSS, err := worker.peakRSS()
	if err != nil {
		return res, err
	}
	res.Tables = append(res.Tables, Table{
		Title:  "peak resident set (VmHWM)",
		Header: []string{"api MiB", "api orders/s under load", "worker MiB", "worker peak payments in flight", "burst payments begun/s", "worker peak goroutines", "worker peak stacks MiB"},
		Rows:   [][]string{{num(apiRSS), num(load.Throughput), num(workerRSS), strconv.Itoa(peak), num(begunRate), strconv.Itoa(goroutines), num(stackMiB)}},
		Data: []map[string]any{{"apiPeakRSSMiB": apiRSS, "apiLoad": load, "workerPeakRSSMiB": workerRSS,
			"workerPeakInFlight": peak, "burstPaymentsBegunPerSecond": begunRate,
			"workerPeakGoroutines": goroutines, "workerPeakStackMiB": stackMiB}},
	})
	res.target(fmt.Sprintf("worker takes up a burst of %d orders (payments begun per second)", burst), begunRate, "orders/s", 500, true)
	res.target("api peak RSS under intake load (150 MB)", apiRSS, "MiB", 150*mibPerMB, false)
	res.target(workerRSSTarget(peak, burst, limit)+" (200 MB)", workerRSS, "MiB", 200*mibPerMB, false)
	return res, nil
}

// runtimePeaks returns the most goroutines and stack memory (MiB) of the readings.
func runtimePeaks(readings ...[]progress) (goroutines int, stackMiB float64) {
	for _, rs := range readings {
		for _, p := range rs {
			goroutines, stackMiB = max(goroutines, p.goroutines), max(stackMiB, p.stackMiB)
		}
	}
	return goroutines, stackMiB
}

// paymentsLimit is the worker's orders.maxPaymentsInFlight for a burst: the target is for
// the whole burst in flight at once, so the limit (5,000 by default, the full size's burst) is
// set to the burst, unless -set names another. The pipeline benchmark measures the default
// limit.
func paymentsLimit(set overrides, burst int) (int, error) {
	v, ok := set["ORDERFLOW_ORDERS_MAXPAYMENTSINFLIGHT"]
	if !ok {
		return burst, nil
	}
	limit, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("-set ORDERFLOW_ORDERS_MAXPAYMENTSINFLIGHT=%s: %w", v, err)
	}
	return limit, nil
}

// workerRSSTarget names the worker's memory target with the payments that were in flight at
// its peak: where the worker's limit kept part of the burst waiting in the queue, it says so,
// since the target is for the whole burst in flight.
func workerRSSTarget(peak, burst, limit int) string {
	if peak < burst && limit < burst {
		return fmt.Sprintf("worker peak RSS (%d payments in flight at most, not the burst's %d: orders.maxPaymentsInFlight %d)", peak, burst, limit)
	}
	if peak < burst {
		return fmt.Sprintf("worker peak RSS (%d payments in flight at most, not the burst's %d)", peak, burst)
	}
	return fmt.Sprintf("worker peak RSS (%d payments in flight at most)", peak)
}

// writeOrders writes n pending orders of two items, with their OrderCreated events, in one
// transaction, as if the API had taken them all at once.
func writeOrders(ctx context.Context, e *env, cat catalogue, n int) error {
	client := db.NewClient(e.pool)
	return db.WithTx(ctx, client, func(tx *ent.Tx) error {
		rows, err := tx.QueryContext(ctx, `
			WITH o AS (
				INSERT INTO orders (user_id, total, status, created_at, updated_at)
				SELECT $1 + g % $2, 20.00, 'pending', now(), now() FROM generate_series(1, $3) g
				RETURNING id, user_id, created_at
			), i AS (
				INSERT INTO order_items (order_id, product_id, quantity, price)
				SELECT o.id, $4 + (o.id * 7 + k) % $5, 1, 10.00 FROM o, generate_series(0, 1) k
				RETURNING order_id, product_id
			)
			SELECT o.id, o.user_id, o.created_at, array_agg(i.product_id ORDER BY i.product_id)::text
			FROM o JOIN i ON i.order_id = o.id GROUP BY o.id, o.user_id, o.created_at`,
			cat.firstUser, cat.users, n, cat.firstProduct, cat.products)
		if err != nil {
			return fmt.Errorf("insert orders: %w", err)
		}
		defer rows.Close()
		ten := events.NewMoney(decimal.RequireFromString("10.00"))
		evs := make([]events.Event, 0, n)
		for rows.Next() {
			var (
				id, user int
				created  time.Time
				products string
			)
			if err := rows.Scan(&id, &user, &created, &products); err != nil {
				return fmt.Errorf("insert orders: %w", err)
			}
			var p1, p2 int
			if _, err := fmt.Sscanf(products, "{%d,%d}", &p1, &p2); err != nil {
				return fmt.Errorf("items of order %d: %q: %w", id, products, err)
			}
			evs = append(evs, events.OrderCreated{OrderID: id, UserID: user, Total: events.NewMoney(decimal.RequireFromString("20.00")),
				Items: []events.Item{{ProductID: p1, Quantity: 1, Price: ten}, {ProductID: p2, Quantity: 1, Price: ten}}, CreatedAt: created})
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("insert orders: %w", err)
		}
		rows.Close()
		if len(evs) != n {
			return fmt.Errorf("inserted %d orders, want %d", len(evs), n)
		}
		_, err = outbox.WriteBatch(ctx, tx, events.SourceAPI, evs, nil)
		return err
	})
}
