package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"orderflow/api/oas"
	"orderflow/events"
	"orderflow/internal/testutil"
)

func items(pairs ...int) []oas.OrderItemInput {
	out := make([]oas.OrderItemInput, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, oas.OrderItemInput{ProductId: pairs[i], Quantity: pairs[i+1]})
	}
	return out
}

func TestCreateOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, custID := e.customer()
	_, otherID := e.customer()
	p1 := e.product("10.50", 10)
	p2 := e.product("0.99", 5)

	t.Run("created pending with copied prices, exact total and an outbox row", func(t *testing.T) {
		res, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(p2, 3, p1, 2)}, oas.CreateOrderParams{})
		if err != nil {
			t.Fatal(err)
		}
		o := res.Response
		if res.Location != "/api/orders/"+strconv.Itoa(o.ID) {
			t.Errorf("Location %q", res.Location)
		}
		if o.Status != oas.OrderStatusPending || o.UserId != custID || o.UserName == "" || !moneyEq(o.Total, "23.97") || len(o.Items) != 2 {
			t.Fatalf("created %+v", o)
		}
		byProduct := map[int]oas.OrderItem{}
		for _, it := range o.Items {
			byProduct[it.ProductId] = it
		}
		if it := byProduct[p1]; it.Quantity != 2 || !moneyEq(it.Price, "10.50") || it.ProductName == "" || it.ID == 0 {
			t.Errorf("item %+v", it)
		}
		if it := byProduct[p2]; it.Quantity != 3 || !moneyEq(it.Price, "0.99") {
			t.Errorf("item %+v", it)
		}
		if e.stock(p1) != 8 || e.stock(p2) != 2 {
			t.Errorf("stock %d and %d, want 8 and 2", e.stock(p1), e.stock(p2))
		}
		got, err := cust.GetOrder(ctx, oas.GetOrderParams{ID: o.ID})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(&o)
		if string(a) != string(b) {
			t.Errorf("GET answers\n%s\nPOST answered\n%s", a, b)
		}

		var payload []byte
		var source string
		if err := e.db.QueryRow(`SELECT payload, payload->>'source' FROM outbox WHERE event_type = $1 AND (payload->'data'->>'orderId')::int = $2`,
			events.TypeOrderCreated, o.ID).Scan(&payload, &source); err != nil {
			t.Fatalf("no OrderCreated outbox row: %v", err)
		}
		envelope, decoded, err := events.Decode(payload)
		if err != nil {
			t.Fatal(err)
		}
		var createdAt time.Time
		if err := e.db.QueryRow(`SELECT created_at FROM orders WHERE id = $1`, o.ID).Scan(&createdAt); err != nil {
			t.Fatal(err)
		}
		ev, ok := decoded.(events.OrderCreated)
		if !ok || ev.OrderID != o.ID || ev.UserID != custID || !ev.Total.Equal(decimalOf(t, "23.97")) || len(ev.Items) != 2 || source != events.SourceAPI ||
			!ev.CreatedAt.Equal(createdAt) || !envelope.Time.Equal(createdAt) {
			t.Fatalf("OrderCreated %+v at %s from %q, order created at %s", decoded, envelope.Time, source, createdAt)
		}
		// The items in the order of the request, at the prices the order copied.
		want := []events.Item{
			{ProductID: p2, Quantity: 3, Price: events.NewMoney(decimalOf(t, "0.99"))},
			{ProductID: p1, Quantity: 2, Price: events.NewMoney(decimalOf(t, "10.50"))},
		}
		for i, it := range ev.Items {
			if it.ProductID != want[i].ProductID || it.Quantity != want[i].Quantity || !it.Price.Equal(want[i].Price.Decimal) {
				t.Errorf("OrderCreated item %d is %+v, want %+v", i, it, want[i])
			}
		}
		// Repricing the product does not change the order.
		if _, err := e.admin.UpdateProduct(ctx, &oas.ProductInput{Name: "Repriced", Price: money("99.00"), Stock: 8}, oas.UpdateProductParams{ID: p1}); err != nil {
			t.Fatal(err)
		}
		again, _ := cust.GetOrder(ctx, oas.GetOrderParams{ID: o.ID})
		if !moneyEq(again.Total, "23.97") {
			t.Errorf("total changed to %s", decimalString(again.Total))
		}
	})
	t.Run("admin orders for a customer", func(t *testing.T) {
		res, err := e.admin.CreateOrder(ctx, &oas.OrderCreate{UserId: oas.NewOptInt(otherID), Items: items(p1, 1)}, oas.CreateOrderParams{})
		if err != nil || res.Response.UserId != otherID {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("customer names itself", func(t *testing.T) {
		res, err := cust.CreateOrder(ctx, &oas.OrderCreate{UserId: oas.NewOptInt(custID), Items: items(p1, 1)}, oas.CreateOrderParams{})
		if err != nil || res.Response.UserId != custID {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("customer orders for someone else", func(t *testing.T) {
		_, err := cust.CreateOrder(ctx, &oas.OrderCreate{UserId: oas.NewOptInt(otherID), Items: items(p1, 1)}, oas.CreateOrderParams{})
		wantStatus(t, err, http.StatusForbidden)
	})
	t.Run("invalid", func(t *testing.T) {
		before := e.stock(p1)
		tests := []struct {
			name, field string
			req         oas.OrderCreate
		}{
			{"no items", "items", oas.OrderCreate{Items: []oas.OrderItemInput{}}},
			{"quantity zero", "items[0].quantity", oas.OrderCreate{Items: items(p1, 0)}},
			{"negative quantity", "items[1].quantity", oas.OrderCreate{Items: items(p2, 1, p1, -1)}},
			{"product twice", "items[1].productId", oas.OrderCreate{Items: items(p1, 1, p1, 2)}},
			{"unknown product", "items[1].productId", oas.OrderCreate{Items: items(p1, 1, 999999, 1)}},
			{"unknown user", "userId", oas.OrderCreate{UserId: oas.NewOptInt(999999), Items: items(p1, 1)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := cust
				if tt.name == "unknown user" {
					c = e.admin
				}
				_, err := c.CreateOrder(ctx, &tt.req, oas.CreateOrderParams{})
				wantField(t, wantStatus(t, err, http.StatusBadRequest), tt.field)
			})
		}
		problemBody(t, e.do(http.MethodPost, "/api/orders", e.adminToken(), "application/json", `{"items":null}`), http.StatusBadRequest)
		problemBody(t, e.do(http.MethodPost, "/api/orders", e.adminToken(), "application/json", `{}`), http.StatusBadRequest)
		if e.stock(p1) != before {
			t.Errorf("stock changed from %d to %d by refused orders", before, e.stock(p1))
		}
	})
	t.Run("a total beyond the largest amount reserves nothing", func(t *testing.T) {
		dear := e.product("9999999999.99", 5)
		_, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(p1, 1, dear, 2)}, oas.CreateOrderParams{})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "items")
		if e.stock(dear) != 5 {
			t.Errorf("stock moved from 5 to %d", e.stock(dear))
		}
	})
	t.Run("insufficient stock reserves nothing", func(t *testing.T) {
		b1, b2 := e.stock(p1), e.stock(p2)
		_, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(p1, 1, p2, b2+1)}, oas.CreateOrderParams{})
		wantStatus(t, err, http.StatusConflict)
		if e.stock(p1) != b1 || e.stock(p2) != b2 {
			t.Errorf("stock moved: %d->%d, %d->%d", b1, e.stock(p1), b2, e.stock(p2))
		}
	})
}

func TestOrderMoney(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	tenth, fifth, third := e.product("0.10", 100), e.product("0.20", 100), e.product("33.33", 100)
	tests := []struct {
		items []oas.OrderItemInput
		want  string
	}{
		{items(tenth, 1, fifth, 1), "0.30"},
		{items(third, 3), "99.99"},
		{items(tenth, 3), "0.30"},
		{items(tenth, 7, fifth, 9, third, 11), "369.13"},
	}
	for _, tt := range tests {
		res, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: tt.items}, oas.CreateOrderParams{})
		if err != nil {
			t.Fatal(err)
		}
		if !moneyEq(res.Response.Total, tt.want) {
			t.Errorf("total %s, want %s", decimalString(res.Response.Total), tt.want)
		}
		var stored string
		if err := e.db.QueryRow(`SELECT total::text FROM orders WHERE id = $1`, res.Response.ID).Scan(&stored); err != nil || stored != tt.want {
			t.Errorf("stored total %q, want %s (%v)", stored, tt.want, err)
		}
		// The JSON number is exact, not a float rendering.
		raw := e.do(http.MethodGet, "/api/orders/"+strconv.Itoa(res.Response.ID), e.adminToken(), "", "")
		var body map[string]json.RawMessage
		if err := json.NewDecoder(raw.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if got := decimalOf(t, string(body["total"])); !got.Equal(decimalOf(t, tt.want)) {
			t.Errorf("JSON total %s, want %s", body["total"], tt.want)
		}
	}
}

func TestConcurrentOrdersNeverOversell(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, _ := e.customerToken()
	cust := e.clientWith(tok)
	// A second API instance on the same database: its orders meet the first's only in
	// PostgreSQL, where the conditional update must keep the stock from going negative.
	second := e.secondInstance(tok)
	pid := e.product("1.00", 10)
	const buyers = 50
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok, gone  int
		otherErrs []error
	)
	for i := range buyers {
		wg.Add(1)
		c := cust
		if i%2 == 1 {
			c = second
		}
		go func() {
			defer wg.Done()
			_, err := c.CreateOrder(ctx, &oas.OrderCreate{Items: items(pid, 1)}, oas.CreateOrderParams{})
			mu.Lock()
			defer mu.Unlock()
			var pe *oas.ErrorStatusCode
			switch {
			case err == nil:
				ok++
			case errors.As(err, &pe) && pe.StatusCode == http.StatusConflict:
				gone++
			default:
				otherErrs = append(otherErrs, err)
			}
		}()
	}
	wg.Wait()
	if ok != 10 || gone != buyers-10 || len(otherErrs) > 0 {
		t.Fatalf("%d succeeded, %d refused with 409, other errors %v", ok, gone, otherErrs)
	}
	if s := e.stock(pid); s != 0 {
		t.Errorf("stock %d, want 0", s)
	}
	var orders int
	if err := e.db.QueryRow(`SELECT count(*) FROM order_items WHERE product_id = $1`, pid).Scan(&orders); err != nil || orders != 10 {
		t.Errorf("%d order items, want 10 (%v)", orders, err)
	}
}

func TestConcurrentMultiItemOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	a, b := e.product("1.00", 1000), e.product("2.00", 1000)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Half list the products in one order, half in the other: locking in id order
			// keeps them from deadlocking.
			req := items(a, 1, b, 1)
			if i%2 == 1 {
				req = items(b, 1, a, 1)
			}
			_, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: req}, oas.CreateOrderParams{})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if e.stock(a) != 960 || e.stock(b) != 960 {
		t.Errorf("stock %d and %d, want 960", e.stock(a), e.stock(b))
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	other, _ := e.customer()
	pid := e.product("5.00", 100)
	key := oas.CreateOrderParams{IdempotencyKey: oas.NewOptString("order-123")}
	req := &oas.OrderCreate{Items: items(pid, 2)}

	first, err := cust.CreateOrder(ctx, req, key)
	if err != nil {
		t.Fatal(err)
	}
	second, err := cust.CreateOrder(ctx, req, key)
	if err != nil {
		t.Fatal(err)
	}
	if second.Response.ID != first.Response.ID || second.Location != first.Location {
		t.Errorf("retry created order %d, first was %d", second.Response.ID, first.Response.ID)
	}
	if s := e.stock(pid); s != 98 {
		t.Errorf("stock %d, want 98 (reserved once)", s)
	}
	if n := len(e.outboxTypes(first.Response.ID)); n != 1 {
		t.Errorf("%d outbox rows, want 1", n)
	}

	t.Run("same key, another body", func(t *testing.T) {
		_, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(pid, 3)}, key)
		wantStatus(t, err, http.StatusUnprocessableEntity)
		if s := e.stock(pid); s != 98 {
			t.Errorf("stock %d, want 98", s)
		}
	})
	t.Run("an admin's key, once it is a customer, replays no order for another user", func(t *testing.T) {
		n := seq.Add(1)
		email := fmt.Sprintf("former-admin%d@example.com", n)
		res, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: "Former Admin", Email: email, Password: "secret1",
			Role: oas.NewOptRole(oas.RoleAdmin)})
		if err != nil {
			t.Fatal(err)
		}
		boss := e.login(email, "secret1")
		_, custID := e.customer()
		forCust := &oas.OrderCreate{UserId: oas.NewOptInt(custID), Items: items(pid, 1)}
		if _, err := boss.CreateOrder(ctx, forCust, key); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Former Admin", Email: email,
			Role: oas.NewOptRole(oas.RoleCustomer)}, oas.UpdateUserParams{ID: res.Response.ID}); err != nil {
			t.Fatal(err)
		}
		_, err = boss.CreateOrder(ctx, forCust, key)
		wantStatus(t, err, http.StatusForbidden)
	})
	t.Run("keys belong to one user", func(t *testing.T) {
		res, err := other.CreateOrder(ctx, req, key)
		if err != nil || res.Response.ID == first.Response.ID {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("without a key every request is a new order", func(t *testing.T) {
		a, err1 := cust.CreateOrder(ctx, req, oas.CreateOrderParams{})
		b, err2 := cust.CreateOrder(ctx, req, oas.CreateOrderParams{})
		if err1 != nil || err2 != nil || a.Response.ID == b.Response.ID {
			t.Fatalf("%v %v", err1, err2)
		}
	})
	t.Run("a retry after its order was deleted places nothing", func(t *testing.T) {
		k := oas.CreateOrderParams{IdempotencyKey: oas.NewOptString("deleted")}
		o, err := cust.CreateOrder(ctx, req, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.admin.DeleteOrder(ctx, oas.DeleteOrderParams{ID: o.Response.ID}); err != nil {
			t.Fatal(err)
		}
		before := e.stock(pid)
		_, err = cust.CreateOrder(ctx, req, k)
		p := wantStatus(t, err, http.StatusConflict)
		if want := "The order placed with this Idempotency-Key was deleted; send a new key to place it again."; p.Detail.Value != want {
			t.Errorf("detail %q, want %q", p.Detail.Value, want)
		}
		if s := e.stock(pid); s != before {
			t.Errorf("stock %d, want %d: the retry reserved it again", s, before)
		}
		// Another body with the key is still the key's misuse.
		_, err = cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(pid, 3)}, k)
		wantStatus(t, err, http.StatusUnprocessableEntity)
	})
	t.Run("concurrent retries create one order", func(t *testing.T) {
		before := e.stock(pid)
		k := oas.CreateOrderParams{IdempotencyKey: oas.NewOptString("concurrent")}
		ids := make(chan int, 10)
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := cust.CreateOrder(ctx, req, k)
				if err != nil {
					t.Error(err)
					return
				}
				ids <- res.Response.ID
			}()
		}
		wg.Wait()
		close(ids)
		seen := map[int]bool{}
		for id := range ids {
			seen[id] = true
		}
		if len(seen) != 1 || e.stock(pid) != before-2 {
			t.Errorf("orders %v, stock %d (was %d)", seen, e.stock(pid), before)
		}
	})
	t.Run("an expired key may be used again", func(t *testing.T) {
		k := oas.CreateOrderParams{IdempotencyKey: oas.NewOptString("old")}
		a, err := cust.CreateOrder(ctx, req, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.Exec(`UPDATE idempotency_keys SET created_at = created_at - interval '25 hours' WHERE key = 'old'`); err != nil {
			t.Fatal(err)
		}
		b, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(pid, 1)}, k)
		if err != nil || b.Response.ID == a.Response.ID {
			t.Fatalf("%+v, %v", b, err)
		}
	})
	t.Run("too long a key", func(t *testing.T) {
		long := make([]byte, 256)
		for i := range long {
			long[i] = 'k'
		}
		_, err := cust.CreateOrder(ctx, req, oas.CreateOrderParams{IdempotencyKey: oas.NewOptString(string(long))})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "Idempotency-Key")
	})
}

// TestIdempotentRetryTakesNoStockOfItsOwn sends a request and its retry (same key, same
// body) at once, to two API instances, for the last units of a product: the retry must
// answer with the first request's order, not with a 409 for the stock that order took.
func TestIdempotentRetryTakesNoStockOfItsOwn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, _ := e.customerToken()
	clients := []*oas.Client{e.clientWith(tok), e.secondInstance(tok)}
	pid := e.product("3.00", 2)
	req := &oas.OrderCreate{Items: items(pid, 2)}
	key := oas.CreateOrderParams{IdempotencyKey: oas.NewOptString("last-units")}

	// Both requests look their key up and find nothing; one then waits for the product's row,
	// the other for the key, which the first holds.
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`SELECT FROM products WHERE id = $1 FOR UPDATE`, pid); err != nil {
		t.Fatal(err)
	}
	type result struct {
		res *oas.OrderHeaders
		err error
	}
	results := make(chan result, len(clients))
	for _, c := range clients {
		go func() {
			res, err := c.CreateOrder(ctx, req, key)
			results <- result{res, err}
		}()
	}
	testutil.Eventually(t, 10*time.Second, "both requests to wait on a lock", func() bool {
		var n int
		if err := e.db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == len(clients)
	})
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	ids := map[int]bool{}
	for range clients {
		r := <-results
		if r.err != nil {
			t.Fatalf("a request with the key got %v, want the order", r.err)
		}
		ids[r.res.Response.ID] = true
	}
	if len(ids) != 1 || e.stock(pid) != 0 {
		t.Errorf("orders %v, stock %d; want one order and stock 0", ids, e.stock(pid))
	}
}

// TestIdempotencyKeyRetryAfterADeleteBetweenItsReads: a retry that reads its key while the
// order is still there, and the order once it has been deleted, is answered as a retry after
// the delete is (409), not with a 404 for an order it never asked for by id. The key's
// foreign key, which clears the key's order when the order is deleted, is dropped to hold
// the moment between the two reads.
func TestIdempotencyKeyRetryAfterADeleteBetweenItsReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	pid := e.product("1.00", 10)
	req := &oas.OrderCreate{Items: items(pid, 1)}
	k := oas.CreateOrderParams{IdempotencyKey: oas.NewOptString("deleted-between-reads")}
	o, err := cust.CreateOrder(ctx, req, k)
	if err != nil {
		t.Fatal(err)
	}
	var fk string
	if err := e.db.QueryRow(`SELECT conname FROM pg_constraint
		WHERE conrelid = 'idempotency_keys'::regclass AND contype = 'f' AND confrelid = 'orders'::regclass`).Scan(&fk); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`ALTER TABLE idempotency_keys DROP CONSTRAINT ` + fk,
		`DELETE FROM order_items WHERE order_id = ` + strconv.Itoa(o.Response.ID),
		`DELETE FROM orders WHERE id = ` + strconv.Itoa(o.Response.ID),
	} {
		if _, err := e.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	_, err = cust.CreateOrder(ctx, req, k)
	p := wantStatus(t, err, http.StatusConflict)
	if want := "The order placed with this Idempotency-Key was deleted; send a new key to place it again."; p.Detail.Value != want {
		t.Errorf("detail %q, want %q", p.Detail.Value, want)
	}
}

// TestOrderOfAUserDeletedMeanwhile: a user deleted after an order's statement found it,
// before the order's foreign key was checked. Its own order gets 401, like any request of a
// deleted user, not an error about a userId it did not send; an admin's order for it gets
// 400 on the userId that named it.
func TestOrderOfAUserDeletedMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		name    string
		byAdmin bool
		status  int
	}{
		{"its own order", false, http.StatusUnauthorized},
		{"an admin's order for it", true, http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			cust, custID := e.customer()
			caller, req := cust, &oas.OrderCreate{Items: items(e.product("5.00", 10), 1)}
			if c.byAdmin {
				caller, req.UserId = e.admin, oas.NewOptInt(custID)
			}
			tx, err := e.db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.Exec(`DELETE FROM users WHERE id = $1`, custID); err != nil {
				t.Fatal(err)
			}
			// The order's check of its user waits for the deletion, which has not committed.
			res := make(chan error, 1)
			go func() {
				_, err := caller.CreateOrder(ctx, req, oas.CreateOrderParams{})
				res <- err
			}()
			testutil.Eventually(t, 5*time.Second, "the order waiting for the deletion", func() bool {
				var waiting int
				if err := e.db.QueryRow(`SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO orders%'`).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				return waiting == 1
			})
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			p := wantStatus(t, <-res, c.status)
			if c.byAdmin && (len(p.Errors) != 1 || p.Errors[0].Field != "userId") {
				t.Errorf("errors %+v, want one about userId", p.Errors)
			}
		})
	}
}
