package api

import (
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/events"
	"orderflow/platform/db"
)

// orderIn creates an order of qty units of pid and moves it to status through the API.
func (e *env) orderIn(c *oas.Client, pid, qty int, status oas.OrderStatus) oas.Order {
	e.t.Helper()
	res, err := c.CreateOrder(ctx, &oas.OrderCreate{Items: items(pid, qty)}, oas.CreateOrderParams{})
	if err != nil {
		e.t.Fatal(err)
	}
	path := map[oas.OrderStatus][]oas.OrderStatus{
		oas.OrderStatusPending:    nil,
		oas.OrderStatusProcessing: {oas.OrderStatusProcessing},
		oas.OrderStatusCompleted:  {oas.OrderStatusProcessing, oas.OrderStatusCompleted},
		oas.OrderStatusExpired:    {oas.OrderStatusExpired},
	}[status]
	o := res.Response
	for _, s := range path {
		got, err := e.admin.UpdateOrderStatus(ctx, &oas.OrderStatusUpdate{Status: s}, oas.UpdateOrderStatusParams{ID: o.ID})
		if err != nil {
			e.t.Fatalf("move order to %s: %v", s, err)
		}
		o = *got
	}
	return o
}

func TestOrderStatusTransitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	pid := e.product("2.50", 1000)

	eventOf := map[oas.OrderStatus]string{
		oas.OrderStatusCompleted: events.TypeOrderCompleted,
		oas.OrderStatusExpired:   events.TypeOrderExpired,
	}
	for _, from := range domain.Statuses {
		for _, to := range domain.Statuses {
			t.Run(string(from)+" to "+string(to), func(t *testing.T) {
				o := e.orderIn(cust, pid, 2, oas.OrderStatus(from))
				before := e.outboxTypes(o.ID)
				stockBefore := e.stock(pid)
				updatedBefore := e.updatedAt(o.ID)

				got, err := e.admin.UpdateOrderStatus(ctx, &oas.OrderStatusUpdate{Status: oas.OrderStatus(to)}, oas.UpdateOrderStatusParams{ID: o.ID})
				after := e.outboxTypes(o.ID)
				added := after[len(before):]
				switch cerr := domain.CanTransition(from, to); {
				case from == to:
					if err != nil || got.Status != o.Status || !e.updatedAt(o.ID).Equal(updatedBefore) {
						t.Fatalf("no-op: %+v, %v", got, err)
					}
					if len(added) != 0 {
						t.Errorf("no-op wrote %v", added)
					}
				case cerr == nil:
					if err != nil || got.Status != oas.OrderStatus(to) || !e.updatedAt(o.ID).After(updatedBefore) {
						t.Fatalf("allowed: %+v, %v", got, err)
					}
					want := []string{}
					if ev, ok := eventOf[oas.OrderStatus(to)]; ok {
						want = []string{ev}
					}
					if !slices.Equal(added, want) {
						t.Errorf("outbox rows written %v, want %v", added, want)
					}
					wantStock := stockBefore
					if to == domain.StatusExpired {
						wantStock += 2 // expiry releases the reservation
					}
					if s := e.stock(pid); s != wantStock {
						t.Errorf("stock %d, want %d", s, wantStock)
					}
				default:
					// The answer says where the order may go from here, if anywhere.
					allowed := map[domain.Status]string{
						domain.StatusPending:    "from pending: processing or expired",
						domain.StatusProcessing: "from processing: completed or expired",
						domain.StatusCompleted:  "completed is final",
						domain.StatusExpired:    "expired is final",
					}[from]
					want := "Order status transition not allowed: " + string(from) + " -> " + string(to) + " (" + allowed + ")."
					if p := wantStatus(t, err, http.StatusConflict); p.Detail.Value != want {
						t.Errorf("detail %q, want %q", p.Detail.Value, want)
					}
					if len(added) != 0 {
						t.Errorf("refused change wrote %v", added)
					}
					now, _ := e.admin.GetOrder(ctx, oas.GetOrderParams{ID: o.ID})
					if now.Status != oas.OrderStatus(from) {
						t.Errorf("status %s after a refused change", now.Status)
					}
				}
			})
		}
	}

	t.Run("audit headers name the admin", func(t *testing.T) {
		o := e.orderIn(cust, pid, 1, oas.OrderStatusCompleted)
		var actor string
		if err := e.db.QueryRow(`SELECT headers->>'actor-user-id' FROM outbox WHERE event_type = $1 AND (payload->'data'->>'orderId')::int = $2`,
			events.TypeOrderCompleted, o.ID).Scan(&actor); err != nil {
			t.Fatal(err)
		}
		if actor != itoa(e.adminID) {
			t.Errorf("actor %q, want %d", actor, e.adminID)
		}
	})
	t.Run("errors", func(t *testing.T) {
		o := e.orderIn(cust, pid, 1, oas.OrderStatusPending)
		_, err := cust.UpdateOrderStatus(ctx, &oas.OrderStatusUpdate{Status: oas.OrderStatusProcessing}, oas.UpdateOrderStatusParams{ID: o.ID})
		wantStatus(t, err, http.StatusForbidden)
		_, err = e.admin.UpdateOrderStatus(ctx, &oas.OrderStatusUpdate{Status: oas.OrderStatusProcessing}, oas.UpdateOrderStatusParams{ID: 999999})
		wantStatus(t, err, http.StatusNotFound)
		res := e.do(http.MethodPut, "/api/orders/"+itoa(o.ID), e.adminToken(), "application/json", `{"status":"unknown"}`)
		body := problemBody(t, res, http.StatusBadRequest)
		if errs, _ := body["errors"].([]any); len(errs) == 0 || errs[0].(map[string]any)["field"] != "status" {
			t.Errorf("errors %v, want one for status", body["errors"])
		}
	})
}

// updatedAt reads an order's updated_at from the database, with its full precision.
func (e *env) updatedAt(id int) time.Time {
	e.t.Helper()
	var at time.Time
	if err := e.db.QueryRow(`SELECT updated_at FROM orders WHERE id = $1`, id).Scan(&at); err != nil {
		e.t.Fatal(err)
	}
	return at
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestReleaseDoesNotTurnAProductsUpdatedAtBack: an expiry or a deletion reads its time before
// it waits for the products' locks; a product changed meanwhile keeps its later updatedAt.
func TestReleaseDoesNotTurnAProductsUpdatedAtBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	pid := e.product("1.00", 10)
	o := e.orderIn(cust, pid, 3, oas.OrderStatusPending)
	var changed time.Time
	if err := e.db.QueryRow(`SELECT updated_at FROM products WHERE id = $1`, pid).Scan(&changed); err != nil {
		t.Fatal(err)
	}
	err := db.WithTx(ctx, e.client, func(tx *ent.Tx) error {
		return releaseStock(ctx, tx, o.ID, changed.Add(-time.Hour))
	})
	if err != nil {
		t.Fatal(err)
	}
	var got time.Time
	if err := e.db.QueryRow(`SELECT updated_at FROM products WHERE id = $1`, pid).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if !got.Equal(changed) {
		t.Errorf("updatedAt %v after a release read an hour before %v", got, changed)
	}
	if s := e.stock(pid); s != 10 {
		t.Errorf("stock %d after the release, want 10", s)
	}
}

func TestDeleteOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	pid := e.product("1.00", 100)
	tests := []struct {
		status   oas.OrderStatus
		released bool
	}{
		{oas.OrderStatusPending, true},
		{oas.OrderStatusProcessing, true},
		{oas.OrderStatusCompleted, false},
		{oas.OrderStatusExpired, false}, // released when it expired
	}
	for _, tt := range tests {
		t.Run(string(tt.status), func(t *testing.T) {
			o := e.orderIn(cust, pid, 3, tt.status)
			before := e.stock(pid)
			wantStatus(t, cust.DeleteOrder(ctx, oas.DeleteOrderParams{ID: o.ID}), http.StatusForbidden)
			if err := e.admin.DeleteOrder(ctx, oas.DeleteOrderParams{ID: o.ID}); err != nil {
				t.Fatal(err)
			}
			want := before
			if tt.released {
				want += 3
			}
			if s := e.stock(pid); s != want {
				t.Errorf("stock %d, want %d", s, want)
			}
			_, err := e.admin.GetOrder(ctx, oas.GetOrderParams{ID: o.ID})
			wantStatus(t, err, http.StatusNotFound)
			wantStatus(t, e.admin.DeleteOrder(ctx, oas.DeleteOrderParams{ID: o.ID}), http.StatusNotFound)
		})
	}
}

// TestAdminActionsWaitingForAnExpiryReleaseNothingMore: an admin deletes, or expires, a
// processing order while the cron job's sweep is expiring it (the sweep holds the order's
// row, has released its stock and not yet committed). The request waits for the sweep and
// then finds the order expired, so the stock is given back once, by the sweep, and the
// order has one OrderExpired event.
func TestAdminActionsWaitingForAnExpiryReleaseNothingMore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	pid := e.product("1.00", 100)
	actions := map[string]func(id int) error{
		"delete": func(id int) error { return e.admin.DeleteOrder(ctx, oas.DeleteOrderParams{ID: id}) },
		"expire": func(id int) error {
			_, err := e.admin.UpdateOrderStatus(ctx, &oas.OrderStatusUpdate{Status: oas.OrderStatusExpired}, oas.UpdateOrderStatusParams{ID: id})
			return err
		},
	}
	for name, action := range actions {
		t.Run(name, func(t *testing.T) {
			o := e.orderIn(cust, pid, 3, oas.OrderStatusProcessing)
			before := e.stock(pid)

			// What one batch of the sweep does to the order, in one transaction.
			sweep, err := e.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sweep.Rollback() }()
			for _, q := range []string{
				`SELECT id FROM orders WHERE id = $1 AND status = 'processing' FOR NO KEY UPDATE SKIP LOCKED`,
				`UPDATE orders SET status = 'expired', updated_at = now() WHERE id = $1 AND status = 'processing'`,
				`UPDATE products p SET stock = p.stock + i.quantity FROM order_items i WHERE i.order_id = $1 AND p.id = i.product_id`,
				`INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload)
					VALUES (now(), gen_random_uuid(), '` + events.TypeOrderExpired + `', 'order.expired', jsonb_build_object('data', jsonb_build_object('orderId', $1::bigint)))`,
			} {
				if _, err := sweep.ExecContext(ctx, q, o.ID); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- action(o.ID) }()
			deadline := time.Now().Add(10 * time.Second)
			for {
				var waiting int
				if err := e.db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				if waiting > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the %s never waited for the sweep", name)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := sweep.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if s := e.stock(pid); s != before+3 {
				t.Errorf("stock %d, want %d: the order's 3 units given back once", s, before+3)
			}
			var expiredEvents int
			if err := e.db.QueryRow(`SELECT count(*) FROM outbox WHERE event_type = $1 AND (payload->'data'->>'orderId')::int = $2`,
				events.TypeOrderExpired, o.ID).Scan(&expiredEvents); err != nil {
				t.Fatal(err)
			}
			if expiredEvents != 1 {
				t.Errorf("%d OrderExpired events, want 1", expiredEvents)
			}
		})
	}
}

// TestAdminExpiryNamesTheOrdersAge checks that an order an admin expires is announced as
// expired after the time it had been open, which the customer's notification repeats, not
// after orders.expireAfter, which it had not reached.
func TestAdminExpiryNamesTheOrdersAge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	pid := e.product("1.00", 10)
	for _, from := range []oas.OrderStatus{oas.OrderStatusPending, oas.OrderStatusProcessing} {
		t.Run(string(from), func(t *testing.T) {
			o := e.orderIn(cust, pid, 1, from)
			if _, err := e.db.Exec(`UPDATE orders SET created_at = now() - interval '3 minutes 20 seconds' WHERE id = $1`, o.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := e.admin.UpdateOrderStatus(ctx, &oas.OrderStatusUpdate{Status: oas.OrderStatusExpired}, oas.UpdateOrderStatusParams{ID: o.ID}); err != nil {
				t.Fatal(err)
			}
			var after string
			if err := e.db.QueryRow(`SELECT payload->'data'->>'expiredAfter' FROM outbox WHERE event_type = $1 AND (payload->'data'->>'orderId')::int = $2`,
				events.TypeOrderExpired, o.ID).Scan(&after); err != nil {
				t.Fatal(err)
			}
			// The age in whole seconds: 3m20s, or a little more on a slow machine.
			if d, err := time.ParseDuration(after); err != nil || d < 200*time.Second || d > 210*time.Second || d != d.Truncate(time.Second) {
				t.Errorf("expiredAfter %q, want the order's age, about 3m20s (orders.expireAfter is %s)", after, e.cfg.Orders.ExpireAfter.D())
			}
		})
	}
}

// TestOrderMovedToProcessingByAnAdminIsMarked: the worker runs no payment for an order that an
// administrator moved to processing, and tells it by processing_by_admin_at; an order that
// took another path has none.
func TestOrderMovedToProcessingByAnAdminIsMarked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, _ := e.customer()
	pid := e.product("1.00", 10)
	marked := func(id int) bool {
		t.Helper()
		var marked bool
		if err := e.db.QueryRow(`SELECT processing_by_admin_at IS NOT NULL FROM orders WHERE id = $1`, id).Scan(&marked); err != nil {
			t.Fatal(err)
		}
		return marked
	}
	if o := e.orderIn(c, pid, 1, oas.OrderStatusProcessing); !marked(o.ID) {
		t.Errorf("order %d moved to processing by an admin is not marked", o.ID)
	}
	if o := e.orderIn(c, pid, 1, oas.OrderStatusExpired); marked(o.ID) {
		t.Errorf("order %d expired from pending is marked", o.ID)
	}
}
