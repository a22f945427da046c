package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Worker metrics the pipeline follows (worker/metrics.go).
const (
	metricCompleted  = `orderflow_worker_payments_total{outcome="completed"}`
	metricDeclined   = `orderflow_worker_payments_total{outcome="declined"}`
	metricTooLate    = `orderflow_worker_payments_total{outcome="too_late"}`
	metricInFlight   = `orderflow_worker_payments_in_flight`
	metricNotifiedOK = `orderflow_worker_notifications_total{event_type="OrderCompleted"}`
	metricNotifiedEx = `orderflow_worker_notifications_total{event_type="OrderExpired"}`
	metricGoroutines = `go_goroutines`
	metricStack      = `go_memstats_stack_inuse_bytes`
)

// progress is one reading of the worker's metrics.
type progress struct {
	at                               time.Time
	completed, declined, tooLate     int
	inFlight, notifiedOK, notifiedEx int
	// goroutines and stackMiB are the Go runtime's: its goroutines, and the memory of their
	// stacks, with the stacks it keeps for reuse.
	goroutines int
	stackMiB   float64
}

// decided is the number of payments with an outcome.
func (p progress) decided() int { return p.completed + p.declined + p.tooLate }

// started is the number of payments begun.
func (p progress) started() int { return p.decided() + p.inFlight }

func readProgress(ctx context.Context, worker *process) (progress, error) {
	m, err := worker.metrics(ctx)
	if err != nil {
		return progress{}, err
	}
	return progress{
		at:         time.Now(),
		completed:  int(m[metricCompleted]),
		declined:   int(m[metricDeclined]),
		tooLate:    int(m[metricTooLate]),
		inFlight:   int(m[metricInFlight]),
		notifiedOK: int(m[metricNotifiedOK]),
		notifiedEx: int(m[metricNotifiedEx]),
		goroutines: int(m[metricGoroutines]),
		stackMiB:   m[metricStack] / (1 << 20),
	}, nil
}

// follow reads the worker's metrics every 50 ms until done returns true for a reading or
// timeout passes, and returns every reading.
func follow(ctx context.Context, worker *process, timeout time.Duration, done func(progress) bool) ([]progress, error) {
	deadline := time.Now().Add(timeout)
	var readings []progress
	for {
		p, err := readProgress(ctx, worker)
		if err != nil {
			return readings, err
		}
		readings = append(readings, p)
		if done(p) {
			return readings, nil
		}
		if time.Now().After(deadline) {
			return readings, fmt.Errorf("not done within %s: %+v", timeout, p)
		}
		select {
		case <-ctx.Done():
			return readings, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runPipeline posts the orders through the API with the worker running, and measures the
// time from the first POST until every order is decided: its payment has an outcome, and
// every completed order has its notification with the e-mail sent. The reference does the
// same orders' database writes directly in SQL, on an identical database, without a broker
// and without the payment delay.
func runPipeline(ctx context.Context, r *runner) (res *Result, err error) {
	res = newResult()
	e, err := r.newEnv(ctx, "pipeline")
	if err != nil {
		return res, err
	}
	defer e.close()
	cat, err := e.fixture(ctx, r.size.history)
	if err != nil {
		return res, err
	}
	refDB, err := e.copyDB(ctx, "sql")
	if err != nil {
		return res, err
	}
	n, delay := r.size.orders, r.size.paymentDelay
	const clients = 16
	overrides := map[string]string{
		"ORDERFLOW_ORDERS_PAYMENTDELAY":          delay.String(),
		"ORDERFLOW_ORDERS_COMPLETIONPROBABILITY": "0.5",
	}
	worker, err := e.start(ctx, "worker", overrides)
	if err != nil {
		return res, err
	}
	api, client, err := e.startAPI(ctx, overrides)
	if err != nil {
		return res, err
	}
	res.setup("api and worker processes (configuration defaults but orders.paymentDelay %s, orders.completionProbability 0.5; orders.maxPaymentsInFlight %d, rabbitmq.prefetch %d, database.maxConns %d, runtime.memoryLimitMiB %d each)",
		delay, e.cfg.Orders.MaxPaymentsInFlight, e.cfg.RabbitMQ.Prefetch, e.cfg.Database.MaxConns, e.cfg.Runtime.MemoryLimitMiB)
	res.setup("%d orders posted by %d clients back to back; decided: payment outcome counted by the worker (orderflow_worker_payments_total) and, for completed ones, the notification (orderflow_worker_notifications_total); checked in the database at the end",
		n, clients)

	// The reference first, while the processes idle.
	refTime, err := pipelineSQL(ctx, e, refDB, cat, n, clients)
	if err != nil {
		return res, err
	}

	workerPid := strconv.Itoa(worker.cmd.Process.Pid)
	cpuBefore, workerBefore := readCPU(api.cmd.Process.Pid), processCPU(workerPid)
	start := time.Now()
	var (
		posted  phase
		postErr = make(chan struct{})
	)
	go func() {
		defer close(postErr)
		posted = countLoop(ctx, clients, n, func(ctx context.Context, rng *rand.Rand) error {
			return client.create(ctx, cat.orderBody(rng))
		})
	}()
	readings, err := follow(ctx, worker, 10*time.Minute, func(p progress) bool {
		return p.decided() >= n && p.notifiedOK >= p.completed
	})
	<-postErr
	if posted.Errors > 0 {
		return res, fmt.Errorf("%d orders failed, first: %s", posted.Errors, posted.FirstError)
	}
	if err != nil {
		return res, fmt.Errorf("pipeline: %w", err)
	}
	cpu := readCPU(api.cmd.Process.Pid).sub(cpuBefore)
	workerCPU := processCPU(workerPid) - workerBefore
	total := readings[len(readings)-1].at.Sub(start)
	last := readings[len(readings)-1]

	// Payments begun per second: from the first POST until the last payment began.
	var allStarted time.Time
	peakInFlight := 0
	for _, p := range readings {
		peakInFlight = max(peakInFlight, p.inFlight)
		if allStarted.IsZero() && p.started() >= n {
			allStarted = p.at
		}
	}
	startRate := float64(n) / allStarted.Sub(start).Seconds()
	rss, err := worker.peakRSS()
	if err != nil {
		return res, err
	}
	if err := checkPipeline(ctx, e, n, last); err != nil {
		return res, err
	}
	res.Tables = append(res.Tables, Table{
		Title: "orders from first POST until every one is decided",
		Header: []string{"orders", "intake orders/s", "payments begun/s", "peak in flight", "completed", "declined",
			"all decided s", "SQL reference s", "ratio"},
		Rows: [][]string{{strconv.Itoa(n), num(posted.Throughput), num(startRate), strconv.Itoa(peakInFlight),
			strconv.Itoa(last.completed), strconv.Itoa(last.declined), num(total.Seconds()), num(refTime.Seconds()),
			num(total.Seconds() / refTime.Seconds())}},
		Data: []map[string]any{{"orders": n, "intake": posted, "paymentsBegunPerSecond": startRate, "peakInFlight": peakInFlight,
			"completed": last.completed, "declined": last.declined, "decidedSeconds": total.Seconds(),
			"referenceSeconds": refTime.Seconds(), "workerPeakRSSMiB": rss}},
	})
	res.Tables = append(res.Tables, Table{
		Title:  "worker process",
		Header: []string{"peak RSS MiB", "peak payments in flight"},
		Rows:   [][]string{{num(rss), strconv.Itoa(peakInFlight)}},
	})
	if per := cpu.perOp(n); per != nil {
		// The worker is part of perOp's rest: it is the api that readCPU reads apart.
		perWorker := ms(workerCPU) / float64(n)
		rest := per.Rest - perWorker
		res.Tables = append(res.Tables, Table{
			Title:  "CPU time per order, ms, from the first POST until every order is decided (2 cores: 1,000 orders/s at 2 ms each is the whole machine)",
			Header: []string{"machine", "api process", "worker process", "load generator", "PostgreSQL", "RabbitMQ", "rest"},
			Rows: [][]string{{num(per.Machine), num(per.API), num(perWorker), num(per.LoadGenerator), num(per.PostgreSQL),
				num(per.RabbitMQ), num(rest)}},
			Data: []map[string]any{{"machine": per.Machine, "api": per.API, "worker": perWorker, "loadGenerator": per.LoadGenerator,
				"postgresql": per.PostgreSQL, "rabbitmq": per.RabbitMQ, "rest": rest}},
		})
	}
	res.target(fmt.Sprintf("all %d orders decided", n), total.Seconds(), "s", 30, false)
	// The payments cannot begin faster than the orders arrive: below 500 orders/s posted, the
	// in-flight payments limit nothing when the last payment began within a second of the
	// last order (the memory benchmark's burst, stored before the worker starts, measures
	// the 500 itself).
	keepUp := min(500, float64(n)/(posted.Elapsed+time.Second).Seconds())
	res.target(fmt.Sprintf("payments begun per second (500, or the %s orders/s posted, the last payment within 1 s of the last order)", num(posted.Throughput)),
		startRate, "orders/s", keepUp, true)
	return res, nil
}

// checkPipeline checks in the database that every order posted was decided exactly as the
// worker counted: completed ones with one notification whose e-mail was sent, the others
// still processing with their declined payment recorded.
func checkPipeline(ctx context.Context, e *env, n int, p progress) error {
	var processing, completed, other, notified int
	err := e.pool.QueryRowContext(ctx, `
		SELECT count(*) FILTER (WHERE o.status = 'processing' AND o.payment_declined_at IS NOT NULL),
		       count(*) FILTER (WHERE o.status = 'completed'),
		       count(*) FILTER (WHERE o.status NOT IN ('processing', 'completed') OR o.status = 'processing' AND o.payment_declined_at IS NULL),
		       (SELECT count(*) FROM notifications n JOIN orders c ON c.id = n.order_id
		        WHERE n.event_type = 'OrderCompleted' AND n.is_email_sent AND c.status = 'completed'
		          AND c.created_at > now() - interval '1 day')
		FROM orders o WHERE o.created_at > now() - interval '1 day'`).Scan(&processing, &completed, &other, &notified)
	if err != nil {
		return fmt.Errorf("check orders: %w", err)
	}
	switch {
	case processing+completed != n || other != 0:
		return fmt.Errorf("%d orders posted; in the database %d processing with a declined payment, %d completed, %d other", n, processing, completed, other)
	case completed != p.completed || processing != p.declined:
		return fmt.Errorf("the worker counted %d completed and %d declined; the database holds %d and %d", p.completed, p.declined, completed, processing)
	case notified != completed:
		return fmt.Errorf("%d orders completed, %d notified with their e-mail sent", completed, notified)
	}
	return nil
}

// pipelineSQL does the database writes of n orders' lives directly in SQL, clients at a
// time, and returns how long it took: the intake transaction and the relay marking its
// event published; pending -> processing; for every other order the completion with its
// event (published too) and the notification with its e-mail marked sent, for the rest the
// declined payment recorded.
func pipelineSQL(ctx context.Context, e *env, name string, cat catalogue, n, clients int) (time.Duration, error) {
	pool, err := e.openDB(ctx, name, clients)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs errorLog
	)
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i)))
			for k := next.Add(1); k <= int64(n); k = next.Add(1) {
				if err := orderLifeSQL(ctx, pool, cat, rng, k%2 == 0); err != nil {
					errs.add(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var p phase
	errs.into(&p)
	if p.Errors > 0 {
		return 0, fmt.Errorf("SQL reference: %s", p.FirstError)
	}
	return time.Since(start), nil
}

// orderLifeSQL writes one order's life in SQL.
func orderLifeSQL(ctx context.Context, pool *sql.DB, cat catalogue, rng *rand.Rand, complete bool) error {
	a, b := cat.twoProducts(rng)
	p1, p2 := min(a, b), max(a, b)
	user := cat.firstUser + rng.IntN(cat.users)
	var orderID, eventID int64
	err := inTx(ctx, pool, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload)
			VALUES (now(), gen_random_uuid(), 'orderflow.order.created.v1', 'order.created', $1::jsonb) RETURNING id`,
			createdPayload).Scan(&eventID); err != nil {
			return err
		}
		for _, p := range []int{p1, p2} {
			if _, err := tx.ExecContext(ctx, `UPDATE products SET stock = stock - 1, updated_at = now() WHERE id = $1 AND stock >= 1`, p); err != nil {
				return err
			}
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO orders (user_id, total, status, created_at, updated_at)
			VALUES ($1, 20.00, 'pending', now(), now()) RETURNING id`, user).Scan(&orderID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO order_items (order_id, product_id, quantity, price)
			VALUES ($1, $2, 1, 10.00), ($1, $3, 1, 10.00)`, orderID, p1, p2)
		return err
	})
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	if _, err := pool.ExecContext(ctx, `UPDATE outbox SET published_at = now() WHERE id = $1`, eventID); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if _, err := pool.ExecContext(ctx, `UPDATE orders SET status = 'processing', updated_at = now() WHERE id = $1 AND status = 'pending'`, orderID); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	if !complete {
		if _, err := pool.ExecContext(ctx, `UPDATE orders SET payment_declined_at = now() WHERE id = $1 AND status = 'processing'`, orderID); err != nil {
			return fmt.Errorf("decline: %w", err)
		}
		return nil
	}
	err = inTx(ctx, pool, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = 'completed', updated_at = now() WHERE id = $1 AND status = 'processing' AND payment_declined_at IS NULL`, orderID); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload)
			VALUES (now(), gen_random_uuid(), 'orderflow.order.completed.v1', 'order.completed', $1::jsonb) RETURNING id`,
			createdPayload).Scan(&eventID)
	})
	if err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	if _, err := pool.ExecContext(ctx, `UPDATE outbox SET published_at = now() WHERE id = $1`, eventID); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return inTx(ctx, pool, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO notifications (order_id, event_type, message, is_email_sent, created_at)
			VALUES ($1, 'OrderCompleted', 'Your order is complete.', false, now())
			ON CONFLICT (order_id, event_type) DO NOTHING RETURNING id`, orderID).Scan(&id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE notifications SET is_email_sent = true WHERE id = $1`, id)
		return err
	})
}

// createdPayload is an event envelope of the size the API writes.
const createdPayload = `{"specversion":"1.0","id":"0193a5b2-7c1e-7d3a-9f00-5b1f3c2d4e6f","source":"orderflow/api","type":"orderflow.order.created.v1","time":"2026-12-01T03:00:00.123456Z","datacontenttype":"application/json","data":{"orderId":1,"userId":1,"total":"20.00","items":[{"productId":1,"quantity":1,"price":"10.00"},{"productId":2,"quantity":1,"price":"10.00"}],"createdAt":"2026-12-01T03:00:00.123456Z"}}`

// inTx runs fn in a transaction on pool.
func inTx(ctx context.Context, pool *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := pool.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
