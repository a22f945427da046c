package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/configuration"
)

// FuzzRequestBodies sends arbitrary bodies to the operations that decode JSON, through the
// real server on a real database, as the admin. Whatever the body, the answer is never a
// 5xx, and every 4xx is an application/problem+json body whose status agrees.
//
// Without -fuzz, the seeds below and testdata/fuzz/FuzzRequestBodies run as ordinary tests.
func FuzzRequestBodies(f *testing.F) {
	e := newEnvWith(f, func(cfg *configuration.Config) {
		// Login answers stay 401 rather than 429, which exercises more of the handler.
		cfg.Auth.LoginAttemptsPerMinute = 1_000_000
		cfg.Auth.LoginAttemptsPerAddressPerMinute = 1_000_000
	}, bcrypt.MinCost)
	tok := e.adminToken()
	// The updates go to a product, an order and a customer that exist, so that they reach
	// the database; the admin itself is left alone to keep its token's rights.
	product := e.product("2.50", 1_000_000)
	order, err := e.admin.CreateOrder(ctx, &oas.OrderCreate{Items: []oas.OrderItemInput{{ProductId: product, Quantity: 1}}}, oas.CreateOrderParams{})
	if err != nil {
		f.Fatal(err)
	}
	_, customer := e.customerToken()
	// The operation is the input's first argument, modulo their number.
	ops := []struct{ method, path string }{
		{http.MethodPost, "/api/auth/login"},
		{http.MethodPost, "/api/users"},
		{http.MethodPost, "/api/products"},
		{http.MethodPost, "/api/orders"},
		{http.MethodPut, "/api/products/" + strconv.Itoa(product)},
		{http.MethodPut, "/api/orders/" + strconv.Itoa(order.Response.ID)},
		{http.MethodPut, "/api/users/" + strconv.Itoa(customer)},
	}

	seeds := map[int][]string{
		0: {`{"email":"admin@orderprocessing.local","password":"Admin@12345"}`, `{"email":"ADMIN@orderprocessing.local ","password":"wrong-password"}`,
			`{"email":"a@b","password":""}`, `{"email":"\u0430dmin@orderprocessing.local","password":"x\u0000xxxxx"}`},
		1: {`{"name":"Eve","email":"eve@example.com","password":"secret1","role":"customer"}`, `{"name":"","email":"x","password":"1"}`,
			`{"name":"a\u0000","email":"nul@example.com","password":"secret1"}`, `{"name":"x","email":"x@example.com","password":"secret1","role":"root"}`},
		2: {`{"name":"Widget","description":"d","price":19.99,"stock":5}`, `{"name":"x","price":1e999999999,"stock":1}`,
			`{"name":"x","price":0.001,"stock":1}`, `{"name":"x","price":1,"stock":9223372036854775808}`, `{"name":"x","price":-1,"stock":-1}`},
		3: {`{"items":[{"productId":1,"quantity":1}]}`, `{"userId":1,"items":[{"productId":1,"quantity":1},{"productId":1,"quantity":1}]}`,
			`{"items":[]}`, `{"items":[{"productId":1,"quantity":1e400}]}`, `{"items":[{"productId":999999,"quantity":2147483647}]}`},
		4: {`{"name":"Renamed","price":3.10,"stock":7}`, `{"name":"x","price":"3.10","stock":7}`},
		5: {`{"status":"processing"}`, `{"status":"completed"}`, `{"status":"nope"}`, `{"status":null}`},
		6: {`{"name":"Customer","email":"c@example.com","role":"customer"}`, `{"name":"x","email":"admin@orderprocessing.local"}`,
			`{"name":"x","email":"y@example.com","password":"12"}`},
	}
	for op, bodies := range seeds {
		for _, b := range bodies {
			f.Add(uint8(op), []byte(b))
		}
	}
	for _, b := range []string{"", "null", "{", "[]", `{"a":` + strings.Repeat("[", 5000), "\xff\xfe", `{"name":"x"}{"name":"y"}`} {
		f.Add(uint8(2), []byte(b))
	}

	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		o := ops[int(op)%len(ops)]
		req, err := http.NewRequest(o.method, e.srv.URL+o.path, strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		answer, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", o.method, o.path, body, res.StatusCode, answer)
		}
		if res.StatusCode >= 400 {
			var p oas.Problem
			if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s %s %q: %d with content type %q", o.method, o.path, body, res.StatusCode, ct)
			}
			if err := json.Unmarshal(answer, &p); err != nil || p.Status != res.StatusCode || p.Title == "" || p.Type == "" {
				t.Fatalf("%s %s %q: %d with problem %s (%v)", o.method, o.path, body, res.StatusCode, answer, err)
			}
			return
		}
		if !json.Valid(answer) {
			t.Fatalf("%s %s %q: %d with a body that is not JSON: %s", o.method, o.path, body, res.StatusCode, answer)
		}
	})
}
