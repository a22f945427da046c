package cronjob_test

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/fx"

	"orderflow/configuration"
	"orderflow/cronjob"
	"orderflow/ent"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
	"orderflow/worker"
)

// countingMailer counts the e-mails sent per order.
type countingMailer struct {
	mu   sync.Mutex
	sent map[int]int
}

func (m *countingMailer) Send(_ context.Context, e worker.Email) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent[e.OrderID]++
	return nil
}

func (m *countingMailer) count(orderID int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent[orderID]
}

// TestPaymentsRacingTwoSweepersEndEachOrderOnce: two worker processes pay for orders while
// two cron jobs sweep every 100 ms, the orders placed at moments such that some reach the
// expiry threshold while their payment runs, some just as it ends, and some only after it
// completed them; odd orders' payments are declined, so they must expire. Every order
// ends either completed (one OrderCompleted event, notification and e-mail, its stock
// kept) or expired (one OrderExpired event and notification, its stock released once),
// never both.
func TestPaymentsRacingTwoSweepersEndEachOrderOnce(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config(t)
	const expireAfter = 2 * time.Second
	cfg.Orders.ExpireAfter = configuration.Duration(expireAfter)
	cfg.Orders.ExpiryInterval = configuration.Duration(100 * time.Millisecond)
	pool := testenv.Pool(t, cfg.Database)
	client := db.NewClient(pool)

	const initialStock = 10_000
	products := make([]int, 3)
	for i := range products {
		p, err := client.Product.Create().SetName("Racing " + string(rune('A'+i))).
			SetPrice(decimal.RequireFromString("2.50")).SetStock(initialStock).Save(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		products[i] = p.ID
	}
	mailer := &countingMailer{sent: map[int]int{}}
	logger := slog.New(slog.DiscardHandler)
	for range 2 {
		startProcess(t, cfg, logger, worker.Module, fx.Decorate(func(client *ent.Client) *worker.Worker {
			return worker.New(client, logger, worker.Options{
				// The orders placed up to half this long ago complete, those placed earlier
				// reach expireAfter while their payment runs, and those in between race.
				PaymentDelay:          expireAfter / 2,
				CompletionProbability: 0.5,
				// Payments of even orders succeed, of odd ones are declined.
				Random: func(id int) float64 { return float64(id % 2) },
				Mailer: mailer,
			})
		}))
	}
	for range 2 {
		startProcess(t, cfg, logger, cronjob.Module)
	}

	const n = 200
	ids, quantities := placeOrders(t, client, n, products)

	testutil.Eventually(t, 60*time.Second, "every order ended and notified", func() bool {
		return count(t, pool, `SELECT count(*) FROM orders WHERE status IN ('pending', 'processing')`) == 0 &&
			count(t, pool, `SELECT count(*) FROM notifications`) >= n
	})
	// Give a duplicate, were there one, time to arrive.
	time.Sleep(time.Second)

	kept := map[int]int{} // stock consumed by the completed orders, per product
	var completed, expired int
	for _, id := range ids {
		var status string
		var completedEvents, expiredEvents, completedNotes, expiredNotes, emailsMarked int
		err := pool.QueryRowContext(context.Background(), `SELECT
			(SELECT status FROM orders WHERE id = $1),
			(SELECT count(*) FROM outbox WHERE event_type = $2 AND (payload->'data'->>'orderId')::bigint = $1),
			(SELECT count(*) FROM outbox WHERE event_type = $3 AND (payload->'data'->>'orderId')::bigint = $1),
			(SELECT count(*) FROM notifications WHERE order_id = $1 AND event_type = 'OrderCompleted'),
			(SELECT count(*) FROM notifications WHERE order_id = $1 AND event_type = 'OrderExpired'),
			(SELECT count(*) FROM notifications WHERE order_id = $1 AND is_email_sent)`,
			id, events.TypeOrderCompleted, events.TypeOrderExpired).
			Scan(&status, &completedEvents, &expiredEvents, &completedNotes, &expiredNotes, &emailsMarked)
		if err != nil {
			t.Fatal(err)
		}
		got := [6]int{completedEvents, expiredEvents, completedNotes, expiredNotes, emailsMarked, mailer.count(id)}
		switch status {
		case "completed":
			completed++
			if id%2 != 0 {
				t.Errorf("order %d completed although its payment was declined", id)
			}
			if got != [6]int{1, 0, 1, 0, 1, 1} {
				t.Errorf("completed order %d: events (completed, expired) %v, notifications %v, e-mails marked %d, sent %d; want one of each kind for completion only",
					id, got[:2], got[2:4], got[4], got[5])
			}
			for p, q := range quantities[id] {
				kept[p] += q
			}
		case "expired":
			expired++
			if got != [6]int{0, 1, 0, 1, 0, 0} {
				t.Errorf("expired order %d: events (completed, expired) %v, notifications %v, e-mails marked %d, sent %d; want one expiry event and notification only",
					id, got[:2], got[2:4], got[4], got[5])
			}
		default:
			t.Errorf("order %d ended %s", id, status)
		}
	}
	t.Logf("%d completed, %d expired", completed, expired)
	if completed == 0 {
		t.Error("no order completed: the payments never won the race, so the test proves nothing about it")
	}
	if expired <= n/2 {
		t.Errorf("%d orders expired, want more than the %d declined: no expiry won the race against a payment", expired, n/2)
	}
	for _, p := range products {
		var stock int
		if err := pool.QueryRowContext(context.Background(), `SELECT stock FROM products WHERE id = $1`, p).Scan(&stock); err != nil {
			t.Fatal(err)
		}
		if want := initialStock - kept[p]; stock != want {
			t.Errorf("product %d: stock %d, want %d (%d kept by completed orders, the rest released once)", p, stock, want, kept[p])
		}
	}
}

// placeOrders places n pending orders as the API does: stock reserved, order and items
// inserted and OrderCreated written to the outbox, in one transaction per order, the orders
// created 0 to 2 s ago in steps of 200 ms so that they reach the expiry threshold at
// different moments. It returns their ids and, per order, the quantity of each product.
func placeOrders(t *testing.T, client *ent.Client, n int, products []int) ([]int, map[int]map[int]int) {
	t.Helper()
	ctx := context.Background()
	user, err := client.User.Create().SetName("Racing Customer").SetEmail("racing@example.com").
		SetPasswordHash("x").Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	price := decimal.RequireFromString("2.50")
	var ids []int
	quantities := map[int]map[int]int{}
	for i := range n {
		err := db.WithTx(ctx, client, func(tx *ent.Tx) error {
			lines := map[int]int{products[i%len(products)]: 1 + i%2, products[(i+1)%len(products)]: 2}
			var items []events.Item
			total := decimal.Zero
			// Products in id order, as the API and the sweep lock them.
			for _, p := range slices.Sorted(maps.Keys(lines)) {
				q := lines[p]
				if err := tx.Product.UpdateOneID(p).AddStock(-q).Exec(ctx); err != nil {
					return err
				}
				items = append(items, events.Item{ProductID: p, Quantity: q, Price: events.NewMoney(price)})
				total = total.Add(price.Mul(decimal.NewFromInt(int64(q))))
			}
			o, err := tx.Order.Create().SetUserID(user.ID).SetTotal(total).
				SetCreatedAt(time.Now().Add(-time.Duration(i%11) * 200 * time.Millisecond)).Save(ctx)
			if err != nil {
				return err
			}
			for p, q := range lines {
				if err := tx.OrderItem.Create().SetOrderID(o.ID).SetProductID(p).SetQuantity(q).SetPrice(price).Exec(ctx); err != nil {
					return err
				}
			}
			ids = append(ids, o.ID)
			quantities[o.ID] = lines
			_, err = outbox.Write(ctx, tx, events.SourceAPI, events.OrderCreated{
				OrderID: o.ID, UserID: user.ID, Total: events.NewMoney(total), Items: items, CreatedAt: o.CreatedAt,
			}, nil)
			return err
		})
		if err != nil {
			t.Fatalf("place order %d: %v", i, err)
		}
	}
	return ids, quantities
}
