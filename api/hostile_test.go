package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"orderflow/api/oas"
	"orderflow/internal/testutil"
)

// rowCounts returns the number of rows of every table of the test database.
func (e *env) rowCounts(t *testing.T) map[string]int {
	t.Helper()
	rows, err := e.db.Query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
	if err != nil {
		t.Fatal(err)
	}
	tables := testutil.Column[string](t, rows)
	if len(tables) < 6 {
		t.Fatalf("only tables %v", tables)
	}
	counts := make(map[string]int, len(tables))
	for _, table := range tables {
		var n int
		if err := e.db.QueryRow(`SELECT count(*) FROM "` + table + `"`).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		counts[table] = n
	}
	return counts
}

// wantProblem fails unless res is a 4xx problem+json answer with the given status (any 4xx
// if status is 0) whose body agrees with it.
func wantProblem(t testing.TB, res *http.Response, status int) (detail string) {
	t.Helper()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode < 400 || res.StatusCode > 499 || (status != 0 && res.StatusCode != status) {
		t.Fatalf("status %d, want %d; body %.300s", res.StatusCode, status, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json; body %.300s", ct, body)
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status != res.StatusCode || p.Type == "" || p.Title == "" {
		t.Fatalf("problem body %.300s (%v) for status %d", body, err, res.StatusCode)
	}
	return p.Detail
}

// TestHostileRequests sends requests that must all be refused with a 4xx problem answer,
// never a 5xx, and leave every table as it was.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	product := e.product("10.00", 5)
	order, err := e.admin.CreateOrder(ctx, &oas.OrderCreate{Items: []oas.OrderItemInput{{ProductId: product, Quantity: 1}}}, oas.CreateOrderParams{})
	if err != nil {
		t.Fatal(err)
	}
	orderPath := "/api/orders/" + strconv.Itoa(order.Response.ID)
	productPath := "/api/products/" + strconv.Itoa(product)

	productBody := func(field string) string {
		return `{"name":"Widget","price":1.00,"stock":1,` + field + `}`
	}
	orderBody := func(quantity string) string {
		return fmt.Sprintf(`{"items":[{"productId":%d,"quantity":%s}]}`, product, quantity)
	}
	userBody := func(email string) string {
		b, _ := json.Marshal(map[string]string{"name": "Mallory", "email": email, "password": "secret1"})
		return string(b)
	}
	deep := func(n int) string { return strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n) }
	deepArray := func(n int) string { return strings.Repeat(`[`, n) + strings.Repeat(`]`, n) }

	type tc struct {
		name, method, path, body string
		status                   int
	}
	cases := []tc{
		// Malformed JSON and wrong types.
		{"truncated JSON", "POST", "/api/products", `{"name":"x","price":`, 400},
		{"not JSON", "POST", "/api/orders", `items=1`, 400},
		{"trailing garbage", "POST", "/api/products", `{"name":"x","price":1,"stock":1}}`, 400},
		{"two documents", "POST", "/api/products", `{"name":"x","price":1,"stock":1}{"name":"y","price":1,"stock":1}`, 400},
		{"JSON null", "POST", "/api/products", `null`, 400},
		{"JSON array", "POST", "/api/orders", `[]`, 400},
		{"empty body", "POST", "/api/users", ``, 400},
		{"invalid UTF-8", "POST", "/api/products", "{\"name\":\"\xff\xfe\",\"price\":1,\"stock\":1}", 400},
		{"name as a number", "POST", "/api/products", `{"name":5,"price":1,"stock":1}`, 400},
		{"stock as a string", "POST", "/api/products", `{"name":"x","price":1,"stock":"5"}`, 400},
		{"stock as a boolean", "POST", "/api/products", `{"name":"x","price":1,"stock":true}`, 400},
		{"price as an object", "POST", "/api/products", `{"name":"x","price":{"amount":1},"stock":1}`, 400},
		{"items as an object", "POST", "/api/orders", `{"items":{"productId":1,"quantity":1}}`, 400},
		{"productId as a string", "POST", "/api/orders", `{"items":[{"productId":"1","quantity":1}]}`, 400},
		{"password as null", "POST", "/api/users", `{"name":"x","email":"x@example.com","password":null}`, 400},
		{"role unknown", "POST", "/api/users", `{"name":"x","email":"x@example.com","password":"secret1","role":"root"}`, 400},
		{"status unknown", "PUT", orderPath, `{"status":"unknown"}`, 400},
		{"status as a number", "PUT", orderPath, `{"status":1}`, 400},
		{"login email as an array", "POST", "/api/auth/login", `{"email":["a@example.com"],"password":"secret1"}`, 400},

		// Huge, negative and fractional numbers.
		{"quantity 1e400", "POST", "/api/orders", orderBody("1e400"), 400},
		{"quantity 2^63", "POST", "/api/orders", orderBody("9223372036854775808"), 400},
		{"quantity 2^31", "POST", "/api/orders", orderBody("2147483648"), 400},
		{"quantity negative", "POST", "/api/orders", orderBody("-1"), 400},
		{"quantity zero", "POST", "/api/orders", orderBody("0"), 400},
		{"quantity fractional", "POST", "/api/orders", orderBody("1.5"), 400},
		{"quantity 1.0", "POST", "/api/orders", orderBody("1.0"), 400},
		{"quantity -0.5", "POST", "/api/orders", orderBody("-0.5"), 400},
		{"productId 2^63", "POST", "/api/orders", `{"items":[{"productId":9223372036854775808,"quantity":1}]}`, 400},
		{"productId negative", "POST", "/api/orders", `{"items":[{"productId":-1,"quantity":1}]}`, 400},
		{"userId 1e400", "POST", "/api/orders", fmt.Sprintf(`{"userId":1e400,"items":[{"productId":%d,"quantity":1}]}`, product), 400},
		{"price 1e400", "POST", "/api/products", `{"name":"x","price":1e400,"stock":1}`, 400},
		{"price 1e999999999", "POST", "/api/products", `{"name":"x","price":1e999999999,"stock":1}`, 400},
		{"price 1e-999999999", "POST", "/api/products", `{"name":"x","price":1e-999999999,"stock":1}`, 400},
		{"price 0e-999999999", "POST", "/api/products", `{"name":"x","price":0e-999999999,"stock":1}`, 400},
		{"price 2^63", "POST", "/api/products", `{"name":"x","price":9223372036854775808,"stock":1}`, 400},
		{"price above numeric(12,2)", "POST", "/api/products", `{"name":"x","price":10000000000,"stock":1}`, 400},
		{"price 3 decimals", "POST", "/api/products", `{"name":"x","price":1.005,"stock":1}`, 400},
		{"price 3 decimals in an update", "PUT", productPath, `{"name":"x","price":0.001,"stock":1}`, 400},
		{"price negative", "POST", "/api/products", `{"name":"x","price":-0.01,"stock":1}`, 400},
		{"price NaN", "POST", "/api/products", `{"name":"x","price":NaN,"stock":1}`, 400},
		{"price Infinity", "POST", "/api/products", `{"name":"x","price":Infinity,"stock":1}`, 400},
		{"stock 1e400", "POST", "/api/products", `{"name":"x","price":1,"stock":1e400}`, 400},
		{"stock 2^63", "POST", "/api/products", `{"name":"x","price":1,"stock":9223372036854775808}`, 400},
		{"stock negative", "POST", "/api/products", `{"name":"x","price":1,"stock":-1}`, 400},
		{"stock fractional", "POST", "/api/products", `{"name":"x","price":1,"stock":0.5}`, 400},
		{"limit 2^63", "GET", "/api/orders?limit=9223372036854775808", ``, 400},
		{"offset negative", "GET", "/api/products?offset=-1", ``, 400},
		{"id 2^63", "GET", "/api/orders/9223372036854775808", ``, 400},
		{"id 1e3", "GET", "/api/orders/1e3", ``, 400},

		{"NUL in a product name", "POST", "/api/products", `{"name":"a\u0000b","price":1,"stock":1}`, 400},
		{"NUL in a description", "POST", "/api/products", `{"name":"a","description":"\u0000","price":1,"stock":1}`, 400},
		{"NUL in a product update", "PUT", productPath, `{"name":"a\u0000","price":1,"stock":1}`, 400},
		{"NUL in a user name", "POST", "/api/users", `{"name":"\u0000","email":"nul@example.com","password":"secret1"}`, 400},
		{"invalid UTF-8 in a user name", "POST", "/api/users", "{\"name\":\"\xc3\",\"email\":\"utf@example.com\",\"password\":\"secret1\"}", 400},
		{"invalid UTF-8 in a login", "POST", "/api/auth/login", "{\"email\":\"a\xff@example.com\",\"password\":\"secret1\"}", 0},

		// Structure.
		{"unknown field", "POST", "/api/products", productBody(`"colour":"red"`), 400},
		{"unknown field in an item", "POST", "/api/orders", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1,"discount":100}]}`, product), 400},
		{"duplicate key", "POST", "/api/products", `{"name":"x","price":1,"stock":1,"stock":2}`, 400},
		{"duplicate key in an item", "POST", "/api/orders", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1,"quantity":-1}]}`, product), 400},
		{"duplicate role", "POST", "/api/users", `{"name":"x","email":"dup@example.com","password":"secret1","role":"customer","role":"admin"}`, 400},
		{"unknown field in a login", "POST", "/api/auth/login", `{"email":"a@example.com","password":"secret1","admin":true}`, 400},
		{"price nested 10000 deep", "POST", "/api/products", `{"name":"x","stock":1,"price":` + deep(10000) + `}`, 400},
		// Deeper than the decoder goes (10,000), within http.maxBodyBytes' default.
		{"arrays nested 30000 deep", "POST", "/api/orders", `{"items":` + deepArray(30000) + `}`, 400},
		{"unknown field nested deep", "POST", "/api/users", `{"x":` + deep(10500) + `}`, 400},
		{"10 MB body", "POST", "/api/products", `{"name":"x","price":1,"stock":1,"description":"` + strings.Repeat("a", 10<<20) + `"}`, 413},
		{"10 MB of items", "POST", "/api/orders", `{"items":[` + strings.Repeat(`{"productId":1,"quantity":1},`, 10<<20/29) + `]}`, 413},

		// E-mail addresses.
		{"email with a Cyrillic a", "POST", "/api/users", userBody("\u0430dmin@orderprocessing.local"), 400},
		{"email with a right-to-left mark", "POST", "/api/users", userBody("mallory\u200f@example.com"), 400},
		{"email with a right-to-left override", "POST", "/api/users", userBody("\u202emoc.elpmaxe@yrollam"), 400},
		{"email with a zero-width space", "POST", "/api/users", userBody("mal\u200blory@example.com"), 400},
		{"email with NUL", "POST", "/api/users", userBody("mallory\x00@example.com"), 400},
		{"email with NUL after the domain", "POST", "/api/users", userBody("mallory@example.com\x00.evil"), 400},
		{"email very long", "POST", "/api/users", userBody(strings.Repeat("a", 5000) + "@example.com"), 400},
		{"email 101 characters", "POST", "/api/users", userBody(strings.Repeat("a", 89) + "@example.com"), 400},
		{"email with an IDN domain", "POST", "/api/users", userBody("mallory@b\u00fccher.example"), 400},
		{"email with a full-width at", "POST", "/api/users", userBody("mallory\uff20example.com"), 400},
		{"email with a display name", "POST", "/api/users", userBody("Mallory <mallory@example.com>"), 400},
		{"email with two addresses", "POST", "/api/users", userBody("a@example.com, b@example.com"), 400},
		{"email with a newline", "POST", "/api/users", userBody("mallory@example.com\r\nBcc: all@example.com"), 400},
		{"email taken in upper case", "POST", "/api/users", userBody(strings.ToUpper(e.cfg.Admin.Email)), 409},
		{"email update to a homoglyph", "PUT", "/api/users/" + strconv.Itoa(e.adminID), `{"name":"Administrator","email":"` + "\u0430dmin@orderprocessing.local" + `"}`, 400},
		{"login with a homoglyph of the admin", "POST", "/api/auth/login", `{"email":"` + "\u0430dmin@orderprocessing.local" + `","password":"` + e.cfg.Admin.Password + `"}`, 0},
		{"login with NUL", "POST", "/api/auth/login", `{"email":"admin@orderprocessing.local\u0000","password":"` + e.cfg.Admin.Password + `"}`, 0},

		// Other methods and content.
		{"form content type", "POST", "/api/products", `name=x&price=1&stock=1`, 415},
	}

	before := e.rowCounts(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			contentType := "application/json"
			if c.status == 415 {
				contentType = "application/x-www-form-urlencoded"
			}
			wantProblem(t, e.do(c.method, c.path, tok, contentType, c.body), c.status)
		})
	}
	// A key that is not ASCII, and an empty one: the latter is a client's mistake (a
	// variable not set), not a request without a key, since stored without one its retry
	// would be a second order.
	for name, key := range map[string]string{"not ASCII": "key-\xff\xfe", "empty": ""} {
		t.Run("Idempotency-Key "+name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/orders", strings.NewReader(orderBody("1")))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", key)
			res, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			wantProblem(t, res, http.StatusBadRequest)
		})
	}
	after := e.rowCounts(t)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("table %s had %d rows, now %d", table, n, after[table])
		}
	}
	if e.stock(product) != 4 {
		t.Errorf("stock %d, want 4", e.stock(product))
	}
}

// TestHostileStringsStoredVerbatim stores SQL and markup in names and descriptions: they
// come back byte for byte, and every table still exists.
func TestHostileStringsStoredVerbatim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	before := e.rowCounts(t)
	strs := []string{
		`Robert'); DROP TABLE products;--`,
		`x' OR '1'='1`,
		`"; DELETE FROM users; --`,
		`$1; TRUNCATE orders CASCADE`,
		`<script>alert(document.cookie)</script>`,
		`<img src=x onerror=alert(1)>`,
		`{{7*7}} ${7*7} %s %n %x`,
		`\u0000 \\ \" '`,
		"emoji \U0001F600 and right-to-left \u202e text",
	}
	for i, s := range strs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			p, err := e.admin.CreateProduct(ctx, &oas.ProductInput{Name: s, Description: oas.NewOptString(s), Price: money("1.00"), Stock: 1})
			if err != nil {
				t.Fatalf("create product %q: %v", s, err)
			}
			got, err := e.admin.GetProduct(ctx, oas.GetProductParams{ID: p.Response.ID})
			if err != nil || got.Response.Name != s || got.Response.Description.Value != s {
				t.Fatalf("product %q came back as %+v (%v)", s, got, err)
			}
			u, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: s, Email: fmt.Sprintf("verbatim%d@example.com", i), Password: "secret1"})
			if err != nil {
				t.Fatalf("create user %q: %v", s, err)
			}
			gotU, err := e.admin.GetUser(ctx, oas.GetUserParams{ID: u.Response.ID})
			if err != nil || gotU.Name != s {
				t.Fatalf("user %q came back as %q (%v)", s, gotU.Name, err)
			}
			// The raw JSON also carries it unchanged (escaped as JSON, never as HTML).
			res := e.do(http.MethodGet, "/api/products/"+strconv.Itoa(p.Response.ID), tok, "", "")
			var raw struct{ Name string }
			if err := json.NewDecoder(res.Body).Decode(&raw); err != nil || raw.Name != s {
				t.Fatalf("raw JSON name %q (%v), want %q", raw.Name, err, s)
			}
		})
	}
	counts := e.rowCounts(t)
	for _, table := range []string{"users", "products", "orders", "order_items", "notifications", "outbox"} {
		if _, ok := counts[table]; !ok {
			t.Errorf("table %s is gone", table)
		}
	}
	if counts["products"] != before["products"]+len(strs) || counts["users"] != before["users"]+len(strs) {
		rows, _ := e.db.Query(`SELECT name FROM products`)
		var names []string
		for rows.Next() {
			var n string
			_ = rows.Scan(&n)
			names = append(names, n)
		}
		rows.Close()
		t.Errorf("rows: %v; products %q", counts, names)
	}
}
