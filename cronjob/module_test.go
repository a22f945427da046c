package cronjob_test

import (
	"context"
	"database/sql"
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
	"orderflow/platform/db"
)

func TestModuleValidates(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	err := fx.ValidateApp(
		fx.NopLogger,
		fx.Supply(&cfg, slog.New(slog.DiscardHandler)),
		fx.Supply(fx.Annotate(prometheus.NewRegistry(), fx.As(new(prometheus.Registerer)))),
		db.Module,
		cronjob.Module,
	)
	if err != nil {
		t.Fatal(err)
	}
}

func TestSweeperRefusesNoThreshold(t *testing.T) {
	t.Parallel()
	s := cronjob.NewSweeper(nil, configuration.Orders{ExpiryBatchSize: 10})
	if _, err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "orders.expireAfter must be positive") {
		t.Errorf("run with no threshold: %v, want an error naming orders.expireAfter", err)
	}
}

func TestModuleSweepsAtStartUp(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config(t)
	cfg.Orders.ExpiryInterval = configuration.Duration(time.Hour)
	pool := testenv.Pool(t, cfg.Database)
	insertStaleOrders(t, pool, "module@example.com", 3)

	reg := prometheus.NewRegistry()
	app := fxtest.New(t,
		fx.Supply(cfg, slog.New(slog.DiscardHandler)),
		fx.Supply(fx.Annotate(reg, fx.As(new(prometheus.Registerer)))),
		fx.NopLogger,
		db.Module,
		cronjob.Module,
	)
	app.RequireStart()
	deadline := time.Now().Add(15 * time.Second)
	for count(t, pool, `SELECT count(*) FROM orders WHERE status = 'expired'`) != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the run at start-up did not expire the 3 stale orders")
		}
		time.Sleep(20 * time.Millisecond)
	}
	app.RequireStop()
	if n := count(t, pool, `SELECT count(*) FROM outbox WHERE routing_key = 'order.expired'`); n != 3 {
		t.Errorf("%d OrderExpired outbox rows, want 3", n)
	}
	// Other tests of this package sweep at the same time, so the counters are at least ours.
	if n := testutil.Gathered(t, reg, "orderflow_orders_expired_total"); n < 3 {
		t.Errorf("orders expired metric = %v, want at least 3", n)
	}
	if n := testutil.Gathered(t, reg, "orderflow_expiry_runs_total"); n < 1 {
		t.Errorf("expiry runs metric = %v, want at least 1", n)
	}
}

// insertStaleOrders inserts n one-item processing orders, an hour old, of a new customer
// with the given e-mail address.
func insertStaleOrders(t *testing.T, pool *sql.DB, email string, n int) {
	t.Helper()
	_, err := pool.ExecContext(context.Background(), `
		WITH u AS (
			INSERT INTO users (created_at, updated_at, name, email, password_hash, role)
			VALUES (now(), now(), 'Stale Orders', $1, 'x', 'customer') RETURNING id
		), o AS (
			INSERT INTO orders (created_at, updated_at, total, status, user_id)
			SELECT now() - interval '1 hour', now(), 19.99, 'processing', u.id FROM u, generate_series(1, $2)
			RETURNING id
		)
		INSERT INTO order_items (order_id, product_id, quantity, price)
		SELECT o.id, (SELECT min(id) FROM products), 1, 19.99 FROM o`, email, n)
	if err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, pool *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := pool.QueryRowContext(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
