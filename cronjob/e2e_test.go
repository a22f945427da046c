package cronjob_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"orderflow/configuration"
	"orderflow/cronjob"
	"orderflow/internal/testenv"
	"orderflow/platform/bus"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
	"orderflow/worker"
)

// An expired order's event travels from the sweep's outbox row through the relay and
// RabbitMQ to the worker, which stores exactly one OrderExpired notification for it.
func TestExpiredOrdersReachTheWorker(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config(t)
	cfg.Orders.ExpiryInterval = configuration.Duration(200 * time.Millisecond)
	t.Cleanup(func() { deleteTopology(t, cfg.RabbitMQ) })
	pool, err := db.Open(context.Background(), cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const n = 40
	mustExec(t, pool, `
		WITH u AS (
			INSERT INTO users (created_at, updated_at, name, email, password_hash, role)
			VALUES (now(), now(), 'E2E Test', 'e2e@example.com', 'x', 'customer') RETURNING id
		), o AS (
			INSERT INTO orders (created_at, updated_at, total, status, user_id)
			SELECT now() - interval '1 hour', now(), 19.99, 'processing', u.id FROM u, generate_series(1, 40)
			RETURNING id
		)
		INSERT INTO order_items (order_id, product_id, quantity, price)
		SELECT o.id, (SELECT min(id) FROM products), 1, 19.99 FROM o`)

	logger := slog.New(slog.DiscardHandler)
	process := func(module fx.Option) *fxtest.App {
		app := fxtest.New(t,
			fx.NopLogger,
			fx.Supply(cfg, logger),
			fx.Supply(fx.Annotate(prometheus.NewRegistry(), fx.As(new(prometheus.Registerer)))),
			db.Module,
			bus.Module,
			outbox.Module,
			module,
		)
		app.RequireStart()
		t.Cleanup(app.RequireStop)
		return app
	}
	// The two processes, each with its own connections, as `orderflow cronjob` and
	// `orderflow worker` run them.
	process(worker.Module)
	process(cronjob.Module)

	deadline := time.Now().Add(30 * time.Second)
	for count(t, pool, `SELECT count(*) FROM notifications WHERE event_type = 'OrderExpired'`) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d OrderExpired notifications after 30s", count(t, pool, `SELECT count(*) FROM notifications`), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Give a duplicate, were there one, time to arrive.
	time.Sleep(500 * time.Millisecond)
	checks := map[string]int{
		`SELECT count(*) FROM orders WHERE status = 'expired'`:                                               n,
		`SELECT count(*) FROM outbox WHERE routing_key = 'order.expired'`:                                    n,
		`SELECT count(*) FROM outbox WHERE routing_key = 'order.expired' AND published_at IS NOT NULL`:       n,
		`SELECT count(*) FROM notifications`:                                                                 n,
		`SELECT count(DISTINCT order_id) FROM notifications WHERE event_type = 'OrderExpired'`:               n,
		`SELECT count(*) FROM notifications WHERE event_type = 'OrderExpired' AND NOT is_email_sent`:         n,
		`SELECT count(*) FROM notifications nt JOIN orders o ON o.id = nt.order_id AND o.status = 'expired'`: n,
	}
	for query, want := range checks {
		if got := count(t, pool, query); got != want {
			t.Errorf("%s: %d, want %d", query, got, want)
		}
	}
}

// deleteTopology removes the test's exchanges and queues from the broker.
func deleteTopology(t testing.TB, cfg configuration.RabbitMQ) {
	t.Helper()
	conn, err := amqp.Dial(cfg.URL())
	if err != nil {
		t.Errorf("delete topology: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Errorf("delete topology: %v", err)
		return
	}
	exchanges, queues := bus.NewTopology(cfg.Exchange, 0, nil).Names()
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false /* if-unused */, false /* if-empty */, false /* no-wait */); err != nil {
			t.Errorf("delete queue %s: %v", q, err)
			return
		}
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false /* if-unused */, false /* no-wait */); err != nil {
			t.Errorf("delete exchange %s: %v", x, err)
			return
		}
	}
}
