package cronjob

import (
	"context"
	"slices"
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
// same work. It logs both and their ratio for every iteration, and reports the medians
// (compare only figures measured side by side: the host's speed varies between runs):
//
//	go test -run '^$' -bench Sweep100k -benchtime 5x ./cronjob/
func BenchmarkSweep100k(b *testing.B) {
	const n = 100_000
	cfg := ordersConfig(time.Minute, 500)
	ctx := context.Background()
	var sweeps, ones, ratios []float64
	for i := range b.N {
		b.StopTimer()
		sweepDB, oneDB := newEnv(b), newEnv(b)
		for _, e := range []env{sweepDB, oneDB} {
			e.orders(b, n, "processing", time.Hour, e.user(b), e.products(b, 20, 0))
			e.exec(b, `VACUUM ANALYZE`)
		}

		var sweepTime, oneTime time.Duration
		sweep := func() {
			b.StartTimer()
			res, err := NewSweeper(sweepDB.pool, cfg).Run(ctx)
			b.StopTimer()
			if err != nil || res.Expired != n {
				b.Fatalf("sweep: %+v, %v", res, err)
			}
			sweepTime = res.Duration
		}
		one := func() {
			start := time.Now()
			var got int
			err := oneDB.pool.QueryRowContext(ctx, oneStatement, cfg.ExpireAfter.D().Microseconds(),
				cfg.ExpireAfter.String(), events.TypeOrderExpired, events.RoutingKeyOrderExpired,
				events.SourceCronJob).Scan(&got)
			oneTime = time.Since(start)
			if err != nil || got != n {
				b.Fatalf("one statement: %d, %v", got, err)
			}
		}
		// Alternate which goes first, so neither always meets a warmer or busier machine.
		if i%2 == 0 {
			sweep()
			one()
		} else {
			one()
			sweep()
		}
		ratio := sweepTime.Seconds() / oneTime.Seconds()
		b.Logf("100k stale orders: batched sweep %.2fs, one statement %.2fs, ratio %.2f",
			sweepTime.Seconds(), oneTime.Seconds(), ratio)
		sweeps, ones, ratios = append(sweeps, sweepTime.Seconds()), append(ones, oneTime.Seconds()), append(ratios, ratio)
	}
	b.ReportMetric(median(sweeps), "sweep-s")
	b.ReportMetric(median(ones), "one-statement-s")
	b.ReportMetric(median(ratios), "ratio")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
