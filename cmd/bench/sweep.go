package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"orderflow/cronjob"
	"orderflow/events"
)

// oneStatement does the whole expiry in one SQL statement, the sweep's reference: expire
// every stale order, release its stock, and write one OrderExpired outbox row per order with
// an envelope like the sweep's.
const oneStatement = `
WITH expired AS (
	UPDATE orders SET status = 'expired', updated_at = now()
	WHERE status = 'processing' AND created_at <= now() - $1 * interval '1 microsecond'
	RETURNING id, user_id, total
), quantities AS (
	SELECT i.product_id, sum(i.quantity) AS quantity
	FROM order_items i JOIN expired e ON e.id = i.order_id
	GROUP BY i.product_id
), released AS (
	UPDATE products p SET stock = p.stock + q.quantity, updated_at = greatest(p.updated_at, now())
	FROM quantities q WHERE p.id = q.product_id
), written AS (
	INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload)
	SELECT now(), x.event_id, $2::text, $3::text, jsonb_build_object(
		'specversion', '1.0', 'id', x.event_id, 'source', $4::text, 'type', $2::text,
		'time', now(), 'datacontenttype', 'application/json',
		'data', jsonb_build_object('orderId', x.id, 'userId', x.user_id, 'total', x.total,
			'expiredAt', now(), 'expiredAfter', $5::text))
	FROM (SELECT gen_random_uuid() AS event_id, e.* FROM expired e) x
)
SELECT count(*) FROM expired`

// runSweep expires stale processing orders with one run of the cron job's sweep
// (cronjob.Sweeper, in this process), alone on the machine as the reference is, then starts
// the worker (its outbox relay publishes the OrderExpired events, its consumer stores the
// notifications) and times the sweep and the time from its start until every notification
// is stored. The reference is oneStatement on an
// identical database.
func runSweep(ctx context.Context, r *runner) (res *Result, err error) {
	res = newResult()
	e, err := r.newEnv(ctx, "sweep")
	if err != nil {
		return res, err
	}
	defer e.close()
	cat, err := e.fixture(ctx, r.size.history)
	if err != nil {
		return res, err
	}
	n := r.size.stale
	if err := e.insertOrders(ctx, cat, n, "processing", time.Hour); err != nil {
		return res, fmt.Errorf("insert stale orders: %w", err)
	}
	if _, err := e.pool.ExecContext(ctx, `VACUUM ANALYZE`); err != nil {
		return res, fmt.Errorf("analyze: %w", err)
	}
	refDB, err := e.copyDB(ctx, "sql")
	if err != nil {
		return res, err
	}
	orders := e.cfg.Orders
	res.setup("cronjob.Sweeper run in the benchmark process (orders.expiryBatchSize %d, orders.expireAfter %s), alone like the statement;",
		orders.ExpiryBatchSize, orders.ExpireAfter)
	res.setup("then the worker process starts (its relay publishes, its consumer stores the notifications; rabbitmq.prefetch %d): all notified counts from the sweep's start",
		e.cfg.RabbitMQ.Prefetch)
	res.setup("fixture: %d stale processing orders (2 items each, 1 hour old) besides %d old completed ones; the one statement runs on a copy", n, r.size.history)
	res.setup("the statement and the sweep each start after a CHECKPOINT")

	// The reference first, on its own database. Each of the two runs starts from a
	// checkpoint, so that neither writes out the pages that the fixture, its copy or the
	// other run left dirty, nor waits for a checkpoint that their WAL set off.
	ref, err := e.openDB(ctx, refDB, 2)
	if err != nil {
		return res, err
	}
	defer ref.Close()
	if err := checkpoint(ctx, ref); err != nil {
		return res, err
	}
	refStart := time.Now()
	var refN int
	err = ref.QueryRowContext(ctx, oneStatement, orders.ExpireAfter.D().Microseconds(),
		events.TypeOrderExpired, events.RoutingKeyOrderExpired, events.SourceCronJob, orders.ExpireAfter.String()).Scan(&refN)
	refTime := time.Since(refStart)
	if err != nil {
		return res, fmt.Errorf("one statement: %w", err)
	}
	if refN != n {
		return res, fmt.Errorf("one statement expired %d orders, want %d", refN, n)
	}

	if err := checkpoint(ctx, e.pool); err != nil {
		return res, err
	}
	start := time.Now()
	sweep, err := cronjob.NewSweeper(e.pool, orders).Run(ctx)
	if err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	if sweep.Expired != n {
		return res, fmt.Errorf("sweep expired %d orders, want %d", sweep.Expired, n)
	}
	worker, err := e.start(ctx, "worker", nil)
	if err != nil {
		return res, err
	}
	readings, err := follow(ctx, worker, 5*time.Minute, func(p progress) bool { return p.notifiedEx >= n })
	if err != nil {
		return res, fmt.Errorf("notifications: %w", err)
	}
	all := readings[len(readings)-1].at.Sub(start)
	var expired, notified int
	err = e.pool.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM orders WHERE status = 'expired'),
		(SELECT count(*) FROM notifications WHERE event_type = 'OrderExpired')`).Scan(&expired, &notified)
	if err != nil {
		return res, fmt.Errorf("check: %w", err)
	}
	if expired != n || notified != n {
		return res, fmt.Errorf("%d orders expired and %d notifications stored, want %d of each", expired, notified, n)
	}
	rss, err := worker.peakRSS()
	if err != nil {
		return res, err
	}
	ratio := sweep.Duration.Seconds() / refTime.Seconds()
	res.Tables = append(res.Tables, Table{
		Title:  "expiry",
		Header: []string{"orders", "batches", "sweep s", "one statement s", "sweep/statement", "all notified s", "worker peak RSS MiB"},
		Rows: [][]string{{strconv.Itoa(n), strconv.Itoa(sweep.Batches), num(sweep.Duration.Seconds()), num(refTime.Seconds()),
			num(ratio), num(all.Seconds()), num(rss)}},
		Data: []map[string]any{{"orders": n, "batches": sweep.Batches, "sweepSeconds": sweep.Duration.Seconds(),
			"statementSeconds": refTime.Seconds(), "ratio": ratio, "allNotifiedSeconds": all.Seconds(), "workerPeakRSSMiB": rss}},
	})
	res.target("sweep / one statement", ratio, "x", 2, false)
	res.target(fmt.Sprintf("all %d OrderExpired notifications stored", n), all.Seconds(), "s", 60, false)
	return res, nil
}
