package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"orderflow/api/oas"
	"orderflow/platform/httpserver"
)

func TestProducts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()

	var id int
	t.Run("create", func(t *testing.T) {
		res, err := e.admin.CreateProduct(ctx, &oas.ProductInput{
			Name: "Widget", Description: oas.NewOptString("A widget."), Price: money("19.99"), Stock: 7,
		})
		if err != nil {
			t.Fatal(err)
		}
		p := res.Response
		id = p.ID
		if p.Name != "Widget" || p.Description.Value != "A widget." || !moneyEq(p.Price, "19.99") || p.Stock != 7 ||
			p.CreatedAt.IsZero() || p.UpdatedAt.IsZero() {
			t.Errorf("created %+v", p)
		}
		if res.Location != "/api/products/"+strconv.Itoa(p.ID) {
			t.Errorf("Location %q", res.Location)
		}
		var price string
		if err := e.db.QueryRow(`SELECT price::text FROM products WHERE id = $1`, id).Scan(&price); err != nil || price != "19.99" {
			t.Errorf("stored price %q, %v", price, err)
		}
	})
	t.Run("create: free product without description", func(t *testing.T) {
		res, err := e.admin.CreateProduct(ctx, &oas.ProductInput{Name: "Free", Price: money("0"), Stock: 0})
		if err != nil || res.Response.Description.Set {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("create: invalid", func(t *testing.T) {
		tests := []struct {
			field string
			req   oas.ProductInput
		}{
			{"name", oas.ProductInput{Name: "", Price: money("1"), Stock: 1}},
			{"name", oas.ProductInput{Name: strings.Repeat("n", 101), Price: money("1"), Stock: 1}},
			{"name", oas.ProductInput{Name: "   ", Price: money("1"), Stock: 1}},
			{"description", oas.ProductInput{Name: "X", Description: oas.NewOptString(strings.Repeat("d", 501)), Price: money("1"), Stock: 1}},
			{"price", oas.ProductInput{Name: "X", Price: money("-0.01"), Stock: 1}},
			{"price", oas.ProductInput{Name: "X", Price: money("1.001"), Stock: 1}},
			{"stock", oas.ProductInput{Name: "X", Price: money("1"), Stock: -1}},
		}
		for _, tt := range tests {
			_, err := e.admin.CreateProduct(ctx, &tt.req)
			wantField(t, wantStatus(t, err, http.StatusBadRequest), tt.field)
		}
		problemBody(t, e.do(http.MethodPost, "/api/products", e.adminToken(), "application/json",
			`{"name":"X","price":1,"stock":1.5}`), http.StatusBadRequest)
	})
	t.Run("create: customer forbidden", func(t *testing.T) {
		_, err := cust.CreateProduct(ctx, &oas.ProductInput{Name: "X", Price: money("1"), Stock: 1})
		wantStatus(t, err, http.StatusForbidden)
	})

	t.Run("get and list as a customer", func(t *testing.T) {
		p, err := cust.GetProduct(ctx, oas.GetProductParams{ID: id})
		if err != nil || p.Response.Name != "Widget" {
			t.Fatalf("%+v, %v", p, err)
		}
		list, err := cust.ListProducts(ctx, oas.ListProductsParams{})
		if err != nil {
			t.Fatal(err)
		}
		var total int
		if err := e.db.QueryRow(`SELECT count(*) FROM products`).Scan(&total); err != nil {
			t.Fatal(err)
		}
		if list.XTotalCount != total || len(list.Response) != total {
			t.Errorf("total %d, %d listed, want %d", list.XTotalCount, len(list.Response), total)
		}
		page, err := cust.ListProducts(ctx, oas.ListProductsParams{Limit: oas.NewOptInt(1), Offset: oas.NewOptInt(total - 1)})
		if err != nil || len(page.Response) != 1 || page.Response[0].ID != list.Response[total-1].ID || page.XTotalCount != total {
			t.Errorf("last page %+v, %v", page, err)
		}
		past, err := cust.ListProducts(ctx, oas.ListProductsParams{Offset: oas.NewOptInt(total + 10)})
		if err != nil || len(past.Response) != 0 || past.XTotalCount != total {
			t.Errorf("page past the end %+v, %v", past, err)
		}
	})
	t.Run("get: missing", func(t *testing.T) {
		_, err := cust.GetProduct(ctx, oas.GetProductParams{ID: 999999})
		wantStatus(t, err, http.StatusNotFound)
	})

	t.Run("update replaces the product", func(t *testing.T) {
		res, err := e.admin.UpdateProduct(ctx, &oas.ProductInput{Name: "Widget 2", Price: money("20.5"), Stock: 3}, oas.UpdateProductParams{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		p := res.Response
		if p.Name != "Widget 2" || p.Description.Set || !moneyEq(p.Price, "20.50") || p.Stock != 3 || p.UpdatedAt.Before(p.CreatedAt) {
			t.Errorf("updated %+v", p)
		}
	})
	t.Run("update: invalid, missing, forbidden", func(t *testing.T) {
		_, err := e.admin.UpdateProduct(ctx, &oas.ProductInput{Name: "X", Price: money("0.999"), Stock: 1}, oas.UpdateProductParams{ID: id})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "price")
		_, err = e.admin.UpdateProduct(ctx, &oas.ProductInput{Name: "X", Price: money("1"), Stock: 1}, oas.UpdateProductParams{ID: 999999})
		wantStatus(t, err, http.StatusNotFound)
		_, err = cust.UpdateProduct(ctx, &oas.ProductInput{Name: "X", Price: money("1"), Stock: 1}, oas.UpdateProductParams{ID: id})
		wantStatus(t, err, http.StatusForbidden)
	})

	t.Run("delete", func(t *testing.T) {
		pid := e.product("1.00", 1)
		wantStatus(t, cust.DeleteProduct(ctx, oas.DeleteProductParams{ID: pid}), http.StatusForbidden)
		if err := e.admin.DeleteProduct(ctx, oas.DeleteProductParams{ID: pid}); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, e.admin.DeleteProduct(ctx, oas.DeleteProductParams{ID: pid}), http.StatusNotFound)
	})
	t.Run("delete: ordered product", func(t *testing.T) {
		pid := e.product("1.00", 5)
		if _, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: []oas.OrderItemInput{{ProductId: pid, Quantity: 1}}}, oas.CreateOrderParams{}); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, e.admin.DeleteProduct(ctx, oas.DeleteProductParams{ID: pid}), http.StatusConflict)
	})
}

// TestTextLimitsCountCharacters stores names and descriptions at their limits in characters
// written with several bytes each: the limits, as the contract and the database state them,
// are characters, not bytes. One character more is a 400 naming the field.
func TestTextLimitsCountCharacters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, r := range []string{"é", "日", "\U0001F600"} {
		name, description := strings.Repeat(r, 100), strings.Repeat(r, 500)
		t.Run(r, func(t *testing.T) {
			p, err := e.admin.CreateProduct(ctx, &oas.ProductInput{Name: name, Description: oas.NewOptString(description), Price: money("1"), Stock: 1})
			if err != nil {
				t.Fatalf("create product: %v", err)
			}
			if p.Response.Name != name || p.Response.Description.Value != description {
				t.Errorf("product came back as %q / %q", p.Response.Name, p.Response.Description.Value)
			}
			if _, err := e.admin.UpdateProduct(ctx, &oas.ProductInput{Name: name, Description: oas.NewOptString(description), Price: money("2"), Stock: 2},
				oas.UpdateProductParams{ID: p.Response.ID}); err != nil {
				t.Fatalf("update product: %v", err)
			}
			_, err = e.admin.CreateProduct(ctx, &oas.ProductInput{Name: name + r, Price: money("1"), Stock: 1})
			wantField(t, wantStatus(t, err, http.StatusBadRequest), "name")

			email := "long" + strconv.Itoa(int(seq.Add(1))) + "@example.com"
			u, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: name, Email: email, Password: "secret1"})
			if err != nil {
				t.Fatalf("create user: %v", err)
			}
			if u.Response.Name != name {
				t.Errorf("user came back as %q", u.Response.Name)
			}
			if _, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: name, Email: email}, oas.UpdateUserParams{ID: u.Response.ID}); err != nil {
				t.Fatalf("update user: %v", err)
			}
		})
	}
}

// TestCreationCutOffInFlightIsOfUnknownOutcome: a product or a user whose INSERT was sent and
// got no answer before the request's deadline may have been created, and is answered so,
// not with "try again later", which would create a second product, or have the user's
// retry refused as if the address were another's. One whose deadline passed before anything
// was sent is answered "try again later".
func TestCreationCutOffInFlightIsOfUnknownOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Served as the process serves it, where a request's time ends its statements. The
	// INSERT waits for the lock however long the request has: the deadline leaves room for
	// what comes before it (auth, a connection, sending the INSERT) on a slow machine.
	ts := httptest.NewServer(httpserver.WithTimeout(e.srv.Config.Handler, 3*time.Second))
	defer ts.Close()
	admin, err := oas.NewClient(ts.URL, token(e.adminToken()), oas.WithClient(ts.Client()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		table, want string
		create      func() error
	}{
		{"products", "whether the product was created, and it may have been. Look for it (GET /api/products)", func() error {
			_, err := admin.CreateProduct(ctx, &oas.ProductInput{Name: "Widget", Price: money("1.00"), Stock: 1})
			return err
		}},
		{"users", "whether the user was created, and it may have been. Look for it (GET /api/users)", func() error {
			_, err := admin.CreateUser(ctx, &oas.UserCreate{Name: "Late", Email: "late@example.com", Password: "secret1"})
			return err
		}},
	} {
		t.Run(tc.table, func(t *testing.T) {
			// Inserts wait for the lock, reads do not.
			locker, err := e.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer locker.Rollback()
			if _, err := locker.ExecContext(ctx, "LOCK TABLE "+tc.table+" IN SHARE MODE"); err != nil {
				t.Fatal(err)
			}
			p := wantStatus(t, tc.create(), http.StatusServiceUnavailable)
			if !strings.Contains(p.Detail.Value, tc.want) {
				t.Errorf("detail %q, want it to say %q", p.Detail.Value, tc.want)
			}
		})
	}
}

// TestUnconfirmed: only a failure after a statement was sent and before its answer leaves
// its outcome unknown.
func TestUnconfirmed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("create product: %w", &pgconn.PgError{Severity: "ERROR", Code: "23514"}), false},
		// The server ended the session: the insert may have been committed first.
		{fmt.Errorf("create product: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}), true},
		// The deadline passed while waiting for a connection: nothing was sent.
		{fmt.Errorf("create product: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("create product: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("create product: %w", unsent{}), false},
	} {
		if got := unconfirmed(tc.err); got != tc.want {
			t.Errorf("unconfirmed(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
