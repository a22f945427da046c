package api

import (
	"context"
	"net/http"
	"testing"

	"orderflow/api/oas"
)

func TestReadOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ann, annID := e.customer()
	bob, bobID := e.customer()
	pid := e.product("3.00", 1000)

	annOrders := []oas.Order{
		e.orderIn(ann, pid, 1, oas.OrderStatusPending),
		e.orderIn(ann, pid, 2, oas.OrderStatusProcessing),
		e.orderIn(ann, pid, 3, oas.OrderStatusCompleted),
	}
	bobOrder := e.orderIn(bob, pid, 4, oas.OrderStatusPending)

	t.Run("customer lists only its own, newest first", func(t *testing.T) {
		res, err := ann.ListOrders(ctx, oas.ListOrdersParams{})
		if err != nil {
			t.Fatal(err)
		}
		if res.XTotalCount != 3 || len(res.Response) != 3 {
			t.Fatalf("total %d, %d orders", res.XTotalCount, len(res.Response))
		}
		for i, o := range res.Response {
			if want := annOrders[2-i].ID; o.ID != want || o.UserId != annID || len(o.Items) != 1 || o.UserName == "" || o.Items[0].ProductName == "" {
				t.Errorf("order %d: %+v, want id %d", i, o, want)
			}
		}
	})
	t.Run("customer asking for another's orders gets none", func(t *testing.T) {
		res, err := ann.ListOrders(ctx, oas.ListOrdersParams{UserId: oas.NewOptInt(bobID)})
		if err != nil || res.XTotalCount != 0 || len(res.Response) != 0 {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("admin lists all, filters by user and status, pages", func(t *testing.T) {
		all, err := e.admin.ListOrders(ctx, oas.ListOrdersParams{})
		if err != nil || all.XTotalCount != 4 || all.Response[0].ID != bobOrder.ID {
			t.Fatalf("%+v, %v", all, err)
		}
		byUser, err := e.admin.ListOrders(ctx, oas.ListOrdersParams{UserId: oas.NewOptInt(bobID)})
		if err != nil || byUser.XTotalCount != 1 || byUser.Response[0].ID != bobOrder.ID {
			t.Fatalf("%+v, %v", byUser, err)
		}
		pending, err := e.admin.ListOrders(ctx, oas.ListOrdersParams{Status: oas.NewOptOrderStatus(oas.OrderStatusPending)})
		if err != nil || pending.XTotalCount != 2 {
			t.Fatalf("%+v, %v", pending, err)
		}
		both, err := e.admin.ListOrders(ctx, oas.ListOrdersParams{UserId: oas.NewOptInt(annID), Status: oas.NewOptOrderStatus(oas.OrderStatusCompleted)})
		if err != nil || both.XTotalCount != 1 || both.Response[0].ID != annOrders[2].ID || both.Response[0].Status != oas.OrderStatusCompleted {
			t.Fatalf("%+v, %v", both, err)
		}
		page, err := e.admin.ListOrders(ctx, oas.ListOrdersParams{Limit: oas.NewOptInt(2), Offset: oas.NewOptInt(1)})
		if err != nil || page.XTotalCount != 4 || len(page.Response) != 2 || page.Response[0].ID != annOrders[2].ID {
			t.Fatalf("%+v, %v", page, err)
		}
		past, err := e.admin.ListOrders(ctx, oas.ListOrdersParams{Offset: oas.NewOptInt(10)})
		if err != nil || past.XTotalCount != 4 || len(past.Response) != 0 {
			t.Fatalf("%+v, %v", past, err)
		}
	})
	t.Run("bad filters", func(t *testing.T) {
		tok := e.adminToken()
		for _, q := range []string{"status=unknown", "userId=abc", "userId=0", "limit=0", "limit=1001", "offset=-1"} {
			problemBody(t, e.do(http.MethodGet, "/api/orders?"+q, tok, "", ""), http.StatusBadRequest)
		}
	})
	t.Run("get: owner and admin; another customer gets 404", func(t *testing.T) {
		if _, err := ann.GetOrder(ctx, oas.GetOrderParams{ID: annOrders[0].ID}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.GetOrder(ctx, oas.GetOrderParams{ID: annOrders[0].ID}); err != nil {
			t.Fatal(err)
		}
		_, err := bob.GetOrder(ctx, oas.GetOrderParams{ID: annOrders[0].ID})
		wantStatus(t, err, http.StatusNotFound)
		_, err = e.admin.GetOrder(ctx, oas.GetOrderParams{ID: 999999})
		wantStatus(t, err, http.StatusNotFound)
	})
	t.Run("customer cannot change or delete orders", func(t *testing.T) {
		_, err := bob.UpdateOrderStatus(ctx, &oas.OrderStatusUpdate{Status: oas.OrderStatusExpired}, oas.UpdateOrderStatusParams{ID: annOrders[0].ID})
		wantStatus(t, err, http.StatusForbidden)
		wantStatus(t, bob.DeleteOrder(ctx, oas.DeleteOrderParams{ID: annOrders[0].ID}), http.StatusForbidden)
		o, _ := e.admin.GetOrder(ctx, oas.GetOrderParams{ID: annOrders[0].ID})
		if o.Status != oas.OrderStatusPending {
			t.Errorf("status %s", o.Status)
		}
	})

	t.Run("notifications oldest first; owner and admin only", func(t *testing.T) {
		id := annOrders[2].ID
		if _, err := e.db.Exec(`
			INSERT INTO notifications (order_id, event_type, message, is_email_sent, created_at) VALUES
			($1, 'OrderCompleted', 'Your order is complete.', true, now()),
			($1, 'OrderCreated', 'We received your order.', false, now() - interval '1 minute')`, id); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*oas.Client{ann, e.admin} {
			ns, err := c.ListOrderNotifications(ctx, oas.ListOrderNotificationsParams{ID: id})
			if err != nil {
				t.Fatal(err)
			}
			if len(ns) != 2 || ns[0].EventType != oas.NotificationEventTypeOrderCreated || ns[1].EventType != oas.NotificationEventTypeOrderCompleted ||
				!ns[1].IsEmailSent || ns[0].IsEmailSent || ns[0].OrderId != id || ns[0].Message == "" || ns[0].CreatedAt.IsZero() {
				t.Errorf("notifications %+v", ns)
			}
		}
		_, err := bob.ListOrderNotifications(ctx, oas.ListOrderNotificationsParams{ID: id})
		wantStatus(t, err, http.StatusNotFound)
		_, err = e.admin.ListOrderNotifications(ctx, oas.ListOrderNotificationsParams{ID: 999999})
		wantStatus(t, err, http.StatusNotFound)
		ns, err := ann.ListOrderNotifications(ctx, oas.ListOrderNotificationsParams{ID: annOrders[0].ID})
		if err != nil || ns == nil || len(ns) != 0 {
			t.Errorf("no notifications: %v, %v", ns, err)
		}
	})
}

// TestListedOrdersShareOneSnapshot: while every order of a customer moves between pending and
// processing together, a list of its pending orders shows either all of them or none, each
// pending, and its total counts what it shows.
func TestListedOrdersShareOneSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, id := e.customer()
	pid := e.product("1.00", 1000)
	const n = 20
	for range n {
		e.orderIn(c, pid, 1, oas.OrderStatusPending)
	}
	flipping, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		for flipping.Err() == nil {
			if _, err := e.db.ExecContext(ctx, `UPDATE orders SET status =
				CASE status WHEN 'pending' THEN 'processing' ELSE 'pending' END WHERE user_id = $1`, id); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("flip the orders' status: %v", err)
		}
	}()
	for i := range 300 {
		res, err := e.admin.ListOrders(ctx, oas.ListOrdersParams{UserId: oas.NewOptInt(id),
			Status: oas.NewOptOrderStatus(oas.OrderStatusPending)})
		if err != nil {
			t.Fatal(err)
		}
		if res.XTotalCount != len(res.Response) || (len(res.Response) != 0 && len(res.Response) != n) {
			t.Fatalf("list %d: total %d, %d orders shown, want all %d or none", i, res.XTotalCount, len(res.Response), n)
		}
		for _, o := range res.Response {
			if o.Status != oas.OrderStatusPending {
				t.Fatalf("list %d: order %d listed as pending is %s", i, o.ID, o.Status)
			}
		}
	}
}
