package cronjob_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"orderflow/configuration"
	"orderflow/cronjob"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/bus"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
	"orderflow/worker"
)

// An expired order's event travels from the sweep's outbox row through the relay and
// RabbitMQ to the worker, which stores exactly one OrderExpired notification for it, and
// records nothing when every event is published again.
func TestExpiredOrdersReachTheWorker(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config(t)
	cfg.Orders.ExpiryInterval = configuration.Duration(200 * time.Millisecond)
	pool := testenv.Pool(t, cfg.Database)
	const n = 40
	insertStaleOrders(t, pool, "e2e@example.com", n)

	logger := slog.New(slog.DiscardHandler)
	// The two processes, each with its own connections, as `orderflow cronjob` and
	// `orderflow worker` run them.
	workerLog := &testutil.Buffer{}
	startProcess(t, cfg, slog.New(slog.NewJSONHandler(workerLog, nil)), worker.Module)
	startProcess(t, cfg, logger, cronjob.Module)

	deadline := time.Now().Add(30 * time.Second)
	for count(t, pool, `SELECT count(*) FROM notifications WHERE event_type = 'OrderExpired'`) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d OrderExpired notifications after 30s", count(t, pool, `SELECT count(*) FROM notifications`), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every event again, as a relay that stopped between publishing and marking sends it:
	// the cron job's relay publishes the rows once they are unpublished.
	if _, err := pool.Exec(`UPDATE outbox SET published_at = NULL WHERE routing_key = 'order.expired'`); err != nil {
		t.Fatal(err)
	}
	lines := func(msg string) int { return strings.Count(workerLog.String(), `"msg":"`+msg+`"`) }
	const recorded, dropped = "order expiry recorded", "order expired event dropped: the expiry was already recorded"
	testutil.Eventually(t, 30*time.Second, "the worker to handle every event twice", func() bool {
		return lines(recorded)+lines(dropped) >= 2*n
	})
	// The relay marks its rows once the broker has confirmed them, which may come after the
	// worker has taken them.
	testutil.Eventually(t, 30*time.Second, "every event marked published again", func() bool {
		return count(t, pool, `SELECT count(*) FROM outbox WHERE routing_key = 'order.expired' AND published_at IS NOT NULL`) == n
	})
	// Give a third copy, were there one, time to arrive.
	time.Sleep(500 * time.Millisecond)
	if r, d := lines(recorded), lines(dropped); r != n || d != n {
		t.Errorf("%d expiries recorded and %d copies dropped, want %d and %d: one record per order", r, d, n, n)
	}
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

// startProcess starts a process of the system, as the orderflow command builds it: the
// database, the broker and the outbox relay, then modules (worker.Module, cronjob.Module), on
// connections of its own and a metrics registry of its own; it stops when the test ends.
func startProcess(t *testing.T, cfg *configuration.Config, logger *slog.Logger, modules ...fx.Option) {
	t.Helper()
	app := fxtest.New(t, append([]fx.Option{
		fx.NopLogger,
		fx.Supply(cfg, logger),
		fx.Supply(fx.Annotate(prometheus.NewRegistry(), fx.As(new(prometheus.Registerer)))),
		db.Module,
		bus.Module,
		outbox.Module,
	}, modules...)...)
	app.RequireStart()
	t.Cleanup(app.RequireStop)
}
