package cronjob

import (
	"context"
	"testing"
	"time"

	"orderflow/events"
)

// oneStatement does the whole expiry of every stale order in a single SQL statement, the
// reference the batched sweep is measured against: expire, release the stock per product,
// and write one outbox row per order whose payload is the same CloudEvents envelope that
// outbox.WriteBatch writes.
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
	UPDATE products p SET stock = p.stock + q.quantity, updated_at = now()
	FROM quantities q WHERE p.id = q.product_id
), written AS (
	INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload)
	SELECT now(), x.event_id, $3::text, $4::text, jsonb_build_object(
		'specversion', '1.0', 'id', x.event_id, 'source', $5::text, 'type', $3::text,
		'time', now(), 'datacontenttype', 'application/json',
		'data', jsonb_build_object('orderId', x.id, 'userId', x.user_id, 'total', x.total,
			'expiredAt', now(), 'expiredAfter', $2::text))
	FROM (SELECT gen_random_uuid() AS event_id, e.* FROM expired e) x
)
SELECT count(*) FROM expired`

// BenchmarkSweep100k times one sweep over 100,000 stale orders (200,000 order lines on 20
// products) and, on an identical fixture in another database, the one statement doing the
// same work, and reports both and their ratio:
//
//	go test -run '^$' -bench Sweep100k -benchtime 3x ./cronjob/
func BenchmarkSweep100k(b *testing.B) {
	const n = 100_000
	cfg := ordersConfig(time.Minute, 500)
	ctx := context.Background()
	var sweepTotal, oneTotal time.Duration
	for i := range b.N {
		b.StopTimer()
		sweepDB, oneDB := newEnv(b), newEnv(b)
		for _, e := range []env{sweepDB, oneDB} {
			e.orders(b, n, "processing", time.Hour, e.user(b), e.products(b, 20, 0))
			e.exec(b, `VACUUM ANALYZE`)
		}

		sweep := func() {
			b.StartTimer()
			res, err := NewSweeper(sweepDB.pool, cfg).Run(ctx)
			b.StopTimer()
			if err != nil || res.Expired != n {
				b.Fatalf("sweep: %+v, %v", res, err)
			}
			sweepTotal += res.Duration
		}
		one := func() {
			start := time.Now()
			var got int
			err := oneDB.pool.QueryRowContext(ctx, oneStatement, cfg.ExpireAfter.D().Microseconds(),
				cfg.ExpireAfter.String(), events.TypeOrderExpired, events.RoutingKeyOrderExpired,
				events.SourceCronJob).Scan(&got)
			d := time.Since(start)
			if err != nil || got != n {
				b.Fatalf("one statement: %d, %v", got, err)
			}
			oneTotal += d
		}
		// Alternate which goes first, so neither always meets a warmer or busier machine.
		if i%2 == 0 {
			sweep()
			one()
		} else {
			one()
			sweep()
		}
	}
	sweep := sweepTotal.Seconds() / float64(b.N)
	one := oneTotal.Seconds() / float64(b.N)
	b.ReportMetric(sweep, "sweep-s/op")
	b.ReportMetric(one, "one-statement-s/op")
	b.ReportMetric(sweep/one, "ratio")
	b.Logf("100k stale orders: batched sweep %.2fs, one statement %.2fs, ratio %.2f", sweep, one, sweep/one)
}
