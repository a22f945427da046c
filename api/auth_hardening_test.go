package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/configuration"
	"orderflow/internal/testutil"
)

// loginRaw posts a login and returns the answer.
func (e *env) loginRaw(email, password string) *http.Response {
	e.t.Helper()
	return e.do(http.MethodPost, "/api/auth/login", "", "application/json",
		fmt.Sprintf(`{"email":%q,"password":%q}`, email, password))
}

// wantRetryAfter fails unless res is a 429 problem with a Retry-After of whole seconds
// between 1 and most.
func wantRetryAfter(t *testing.T, res *http.Response, most int) (detail string) {
	t.Helper()
	ra := res.Header.Get("Retry-After")
	detail = wantProblem(t, res, http.StatusTooManyRequests)
	n, err := strconv.Atoi(ra)
	if err != nil || n < 1 || n > most {
		t.Fatalf("Retry-After %q, want 1 to %d seconds", ra, most)
	}
	return detail
}

func TestLoginRateLimitPerAccount(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(cfg *configuration.Config) {
		cfg.Auth.LoginAttemptsPerMinute = 3
		cfg.Auth.LoginAttemptsPerAddressPerMinute = 1000
	}, bcrypt.MinCost)
	admin := e.cfg.Admin

	// Successful logins do not count.
	for range 10 {
		if res := e.loginRaw(admin.Email, admin.Password); res.StatusCode != http.StatusOK {
			t.Fatalf("login: %d", res.StatusCode)
		}
	}
	for i := range 3 {
		if res := e.loginRaw(admin.Email, "wrong-password"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failed login %d: %d, want 401", i+1, res.StatusCode)
		}
	}
	// 3 per minute: the next token comes in 20 s.
	if d := wantRetryAfter(t, e.loginRaw(admin.Email, "wrong-password"), 20); d != errTooManyLogins.Detail {
		t.Errorf("detail %q, want %q", d, errTooManyLogins.Detail)
	}
	// The right password is refused too while the account is limited, and the e-mail
	// address is compared lower-cased.
	wantRetryAfter(t, e.loginRaw(strings.ToUpper(admin.Email), admin.Password), 20)

	// Unknown addresses are limited alike, so a 429 tells nothing about an account.
	for range 3 {
		if res := e.loginRaw("nobody@example.com", "wrong-password"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unknown address: %d, want 401", res.StatusCode)
		}
	}
	wantRetryAfter(t, e.loginRaw("nobody@example.com", "wrong-password"), 20)

	// Another account from the same address is not affected.
	_, _ = e.customerToken()
	if res := e.loginRaw("someone-else@example.com", "wrong-password"); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("another account: %d, want 401", res.StatusCode)
	}
}

func TestLoginRateLimitPerAddress(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(cfg *configuration.Config) {
		cfg.Auth.LoginAttemptsPerMinute = 1000
		cfg.Auth.LoginAttemptsPerAddressPerMinute = 5
	}, bcrypt.MinCost)
	cust, id := e.customerToken()
	for i := range 5 {
		if res := e.loginRaw(fmt.Sprintf("guess%d@example.com", i), "wrong-password"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, res.StatusCode)
		}
	}
	// Every address is now refused from this client, even the admin's right password, with
	// an answer that names the client's budget rather than the address's.
	for _, res := range []*http.Response{e.loginRaw("guess99@example.com", "wrong-password"), e.loginRaw(e.cfg.Admin.Email, e.cfg.Admin.Password)} {
		if d := wantRetryAfter(t, res, 12); d != errTooManyFromClient.Detail {
			t.Errorf("detail %q, want %q", d, errTooManyFromClient.Detail)
		}
	}
	// A user of this client who changes a password, with the right current one, is told
	// that the client's budget is used up, not that it gave wrong current passwords.
	res := e.do(http.MethodPut, "/api/users/"+strconv.Itoa(id), cust, "application/json",
		`{"name":"X","email":"x@example.com","password":"another1","currentPassword":"secret1"}`)
	if d := wantRetryAfter(t, res, 12); d != errTooManyFromClient.Detail {
		t.Errorf("password change: detail %q, want %q", d, errTooManyFromClient.Detail)
	}
	// Other operations are not limited.
	if _, err := e.admin.ListProducts(ctx, oas.ListProductsParams{}); err != nil {
		t.Fatal(err)
	}
}

// TestLoginRateLimitPerNetwork: a client's address budget is shared by every address it can
// take at will. An IPv6 client is given a whole /64 network, so its addresses are counted by
// that network, and an IPv4 address counts the same whether it comes plain or IPv4-mapped
// (::ffff:a.b.c.d, as a dual-stack listener may show it).
func TestLoginRateLimitPerNetwork(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(cfg *configuration.Config) {
		cfg.Auth.LoginAttemptsPerMinute = 1000
		cfg.Auth.LoginAttemptsPerAddressPerMinute = 5
	}, bcrypt.MinCost)
	srv, err := NewServer(e.h, e.cfg.HTTP.MaxBodyBytes)
	if err != nil {
		t.Fatal(err)
	}
	login := func(remoteAddr string, i int) int {
		req := httptest.NewRequest(http.MethodPost, "/api/auth/login",
			strings.NewReader(fmt.Sprintf(`{"email":"guess%d@example.com","password":"wrong-password"}`, i)))
		req.Header.Set("Content-Type", "application/json")
		// Not read: any client could set them.
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		req.Header.Set("X-Real-IP", fmt.Sprintf("198.51.100.%d", i))
		req.RemoteAddr = remoteAddr
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w.Code
	}
	for _, tc := range []struct {
		name  string
		addrs func(i int) string
	}{
		{"one IPv6 /64", func(i int) string { return fmt.Sprintf("[2001:db8:0:1:%x::1]:4000", i+1) }},
		{"IPv4 plain and mapped", func(i int) string {
			if i%2 == 0 {
				return "192.0.2.7:4000"
			}
			return "[::ffff:192.0.2.7]:4000"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 5 {
				if code := login(tc.addrs(i), i); code != http.StatusUnauthorized {
					t.Fatalf("attempt %d from %s: %d, want 401", i+1, tc.addrs(i), code)
				}
			}
			if code := login(tc.addrs(5), 5); code != http.StatusTooManyRequests {
				t.Fatalf("attempt 6 from %s: %d, want 429: the address budget is 5", tc.addrs(5), code)
			}
		})
	}
	// Another /64 has a budget of its own.
	if code := login("[2001:db8:0:2::1]:4000", 0); code != http.StatusUnauthorized {
		t.Fatalf("another network: %d, want 401", code)
	}
}

func TestLoginLimiterRefills(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLoginLimiter(2, 3, func() time.Time { return now })
	take := func(account, addr string) bool { ok, _, _ := l.take(account, addr); return ok }

	if !take("a", "1") || !take("a", "1") {
		t.Fatal("the first two attempts are refused")
	}
	ok, wait, byAddress := l.take("a", "1")
	if ok || wait != 30*time.Second || byAddress {
		t.Fatalf("third attempt: %v, wait %s, by the address %v; want refused for 30s by the account", ok, wait, byAddress)
	}
	if !take("b", "1") {
		t.Fatal("account b is refused")
	}
	// Address 1 has used 3 tokens (the refused attempt took none).
	if ok, _, byAddress := l.take("c", "1"); ok || !byAddress {
		t.Fatalf("account c from address 1: %v, by the address %v; want refused by the address", ok, byAddress)
	}
	if !take("c", "2") {
		t.Fatal("address 2 is refused")
	}
	now = now.Add(30 * time.Second)
	if !take("a", "2") {
		t.Fatal("account a has not refilled after 30s")
	}
	if take("a", "2") {
		t.Fatal("account a got two tokens back in 30s")
	}
	// A refund gives back what a successful login took, up to the capacity.
	l.refund("a", "2")
	if !take("a", "2") {
		t.Fatal("the refunded token is missing")
	}
	now = now.Add(time.Hour)
	for range 5 {
		l.refund("a", "2")
	}
	if !take("a", "3") || !take("a", "3") || take("a", "3") {
		t.Fatal("refunds filled account a above its capacity")
	}
	if got := retryAfter(1500 * time.Millisecond); got != "2" {
		t.Errorf("retryAfter(1.5s) = %s, want 2", got)
	}
	if got := retryAfter(0); got != "1" {
		t.Errorf("retryAfter(0) = %s, want 1", got)
	}
}

func TestLoginLimiterBoundsItsMemory(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLoginLimiter(1, 1_000_000, func() time.Time { return now })
	for i := range maxLimiterKeys + 10 {
		l.take("user"+strconv.Itoa(i), "1")
	}
	if n := len(l.accounts.buckets); n > maxLimiterKeys {
		t.Fatalf("%d account buckets, want at most %d", n, maxLimiterKeys)
	}
}

// TestLoginLimiterRefusedAddressMakesNoBuckets: a client whose address is past its budget
// adds no bucket for the accounts it goes on trying, and is told how long its address waits.
func TestLoginLimiterRefusedAddressMakesNoBuckets(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLoginLimiter(10, 1, func() time.Time { return now })
	if ok, _, _ := l.take("first@example.com", "1"); !ok {
		t.Fatal("the first attempt was refused")
	}
	for i := range 1000 {
		ok, wait, byAddress := l.take("user"+strconv.Itoa(i)+"@example.com", "1")
		if ok || !byAddress || wait != time.Minute {
			t.Fatalf("attempt %d past the address's budget: ok %v, by address %v, wait %s; want refused by the address for 1m", i, ok, byAddress, wait)
		}
	}
	if n := len(l.accounts.buckets); n != 1 {
		t.Errorf("%d account buckets, want 1", n)
	}
}

// TestLoginTimingDoesNotRevealAccounts compares the median time of logins with an unknown
// e-mail address against logins with a known address and a wrong password: both pay one
// bcrypt comparison at the same cost, so they are alike within a factor of two (without
// the dummy comparison the unknown address answers many times faster).
func TestLoginTimingDoesNotRevealAccounts(t *testing.T) {
	t.Parallel()
	const cost = 6 // bcrypt.MinCost+2: still far above the rest of a login
	e := newEnvWith(t, func(cfg *configuration.Config) {
		cfg.Auth.LoginAttemptsPerMinute = 1000
		cfg.Auth.LoginAttemptsPerAddressPerMinute = 1000
	}, cost)
	measure := func(email string) time.Duration {
		start := time.Now()
		res := e.loginRaw(email, "wrong-password")
		d := time.Since(start)
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("login %s: %d", email, res.StatusCode)
		}
		return d
	}
	measure("warm-up@example.com") // the first unknown address creates the dummy hash
	var unknown, known []time.Duration
	for i := range 11 {
		// Interleaved, so that a slow moment of the machine hits both alike.
		unknown = append(unknown, measure(fmt.Sprintf("nobody%d@example.com", i)))
		known = append(known, measure(e.cfg.Admin.Email))
	}
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	mu, mk := median(unknown), median(known)
	if ratio := float64(mu) / float64(mk); ratio < 0.5 || ratio > 2 {
		t.Errorf("median login time: unknown address %s, known address with a wrong password %s (ratio %.2f)", mu, mk, ratio)
	}
}

// TestTokensOfOtherAlgorithms refuses tokens signed with asymmetric algorithms, even with
// valid claims.
func TestTokensOfOtherAlgorithms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := claims{Role: "admin", RegisteredClaims: jwt.RegisteredClaims{
		Subject:   strconv.Itoa(e.adminID),
		Issuer:    e.cfg.Auth.Issuer,
		IssuedAt:  jwt.NewNumericDate(time.Now().Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"RS256":               sign(t, jwt.SigningMethodRS256, rsaKey, c),
		"ES256":               sign(t, jwt.SigningMethodES256, ecKey, c),
		"PS256":               sign(t, jwt.SigningMethodPS256, rsaKey, c),
		"HS384 right secret":  sign(t, jwt.SigningMethodHS384, []byte(e.cfg.Auth.JWTSecret), c),
		"HS256 empty secret":  sign(t, jwt.SigningMethodHS256, []byte{}, c),
		"HS256 secret prefix": sign(t, jwt.SigningMethodHS256, []byte(e.cfg.Auth.JWTSecret[:16]), c),
	} {
		t.Run(name, func(t *testing.T) {
			res := e.do(http.MethodGet, "/api/users", tok, "", "")
			wantProblem(t, res, http.StatusUnauthorized)
			if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", res.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestRememberedTokensFollowTheUser checks that the verified-token cache never outlives a
// change to its user: a token already used (and so remembered) stops working when its user
// is deleted, and carries a new role at once, on every API instance.
func TestRememberedTokensFollowTheUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, id := e.customerToken()
	c := e.clientWith(tok)
	other := e.secondInstance(tok)
	for _, client := range []*oas.Client{c, other, c} {
		if _, err := client.GetUser(ctx, oas.GetUserParams{ID: id}); err != nil {
			t.Fatal(err)
		}
		_, err := client.ListUsers(ctx, oas.ListUsersParams{})
		wantStatus(t, err, http.StatusForbidden)
	}
	if _, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Promoted", Email: fmt.Sprintf("promoted%d@example.com", id),
		Role: oas.NewOptRole(oas.RoleAdmin)}, oas.UpdateUserParams{ID: id}); err != nil {
		t.Fatal(err)
	}
	for _, client := range []*oas.Client{c, other} {
		if _, err := client.ListUsers(ctx, oas.ListUsersParams{}); err != nil {
			t.Fatalf("promoted user is still refused: %v", err)
		}
	}
	if _, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Demoted", Email: fmt.Sprintf("promoted%d@example.com", id),
		Role: oas.NewOptRole(oas.RoleCustomer)}, oas.UpdateUserParams{ID: id}); err != nil {
		t.Fatal(err)
	}
	product := e.product("1.00", 10)
	for _, client := range []*oas.Client{c, other} {
		_, err := client.ListUsers(ctx, oas.ListUsersParams{})
		wantStatus(t, err, http.StatusForbidden)
		// CreateOrder reads the caller with its order statement, not in the security handler.
		_, err = client.CreateOrder(ctx, &oas.OrderCreate{UserId: oas.NewOptInt(e.adminID), Items: items(product, 1)},
			oas.CreateOrderParams{})
		wantStatus(t, err, http.StatusForbidden)
	}
	if err := e.admin.DeleteUser(ctx, oas.DeleteUserParams{ID: id}); err != nil {
		t.Fatal(err)
	}
	for _, client := range []*oas.Client{c, other} {
		_, err := client.ListProducts(ctx, oas.ListProductsParams{})
		wantStatus(t, err, http.StatusUnauthorized)
		for _, params := range []oas.CreateOrderParams{{}, {IdempotencyKey: oas.NewOptString("after-delete")}} {
			_, err = client.CreateOrder(ctx, &oas.OrderCreate{Items: items(product, 1)}, params)
			wantStatus(t, err, http.StatusUnauthorized)
		}
	}
	if e.stock(product) != 10 {
		t.Errorf("refused orders moved the stock to %d", e.stock(product))
	}
}

// TestCustomerCannotReachOthers tries every order id that belongs to someone else (another
// customer's and the admin's), through every order operation, as a customer: nothing of
// them comes back, and nothing changes.
func TestCustomerCannotReachOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	product := e.product("5.00", 100)
	mallory, malloryID := e.customerToken()
	victim, victimID := e.customer()
	for range 3 {
		if _, err := victim.CreateOrder(ctx, &oas.OrderCreate{Items: []oas.OrderItemInput{{ProductId: product, Quantity: 1}}}, oas.CreateOrderParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.admin.CreateOrder(ctx, &oas.OrderCreate{Items: []oas.OrderItemInput{{ProductId: product, Quantity: 2}}}, oas.CreateOrderParams{}); err != nil {
		t.Fatal(err)
	}
	own, err := e.clientWith(mallory).CreateOrder(ctx, &oas.OrderCreate{Items: []oas.OrderItemInput{{ProductId: product, Quantity: 1}}}, oas.CreateOrderParams{})
	if err != nil {
		t.Fatal(err)
	}
	// Every order gets a notification, so that there is something to leak.
	if _, err := e.db.Exec(`INSERT INTO notifications (order_id, event_type, message, is_email_sent, created_at)
		SELECT id, 'OrderCompleted', 'secret of order ' || id, true, now() FROM orders`); err != nil {
		t.Fatal(err)
	}
	rows, err := e.db.Query(`SELECT id FROM orders WHERE user_id <> $1 ORDER BY id`, malloryID)
	if err != nil {
		t.Fatal(err)
	}
	others := testutil.Column[int](t, rows)
	if len(others) != 4 {
		t.Fatalf("other orders %v", others)
	}
	before := e.rowCounts(t)
	var stockBefore = e.stock(product)

	// Ids just around the real ones too, which do not exist: the same answer as for others',
	// so that the answer does not tell whether an order exists. Id 0 is no id (400).
	answers := map[string]map[int][]int{} // operation -> status -> ids
	probe := append(others, 0, own.Response.ID+1, own.Response.ID+1000)
	for _, id := range probe {
		path := "/api/orders/" + strconv.Itoa(id)
		for _, req := range []struct{ op, method, path, body string }{
			{"GET order", http.MethodGet, path, ""},
			{"GET notifications", http.MethodGet, path + "/notifications", ""},
			{"PUT order", http.MethodPut, path, `{"status":"expired"}`},
			{"DELETE order", http.MethodDelete, path, ""},
		} {
			t.Run(fmt.Sprintf("%s %s", req.method, req.path), func(t *testing.T) {
				res := e.do(req.method, req.path, mallory, "application/json", req.body)
				status := res.StatusCode
				wantProblem(t, res, 0)
				if id == 0 && status == http.StatusBadRequest {
					return
				}
				if status != http.StatusNotFound && status != http.StatusForbidden {
					t.Fatalf("status %d, want 404 or 403", status)
				}
				if answers[req.op] == nil {
					answers[req.op] = map[int][]int{}
				}
				answers[req.op][status] = append(answers[req.op][status], id)
			})
		}
	}
	for op, byStatus := range answers {
		if len(byStatus) != 1 {
			t.Errorf("%s answers others' orders and missing ones differently (status: ids): %v", op, byStatus)
		}
	}
	for _, uid := range []int{victimID, e.adminID} {
		t.Run("list orders of user "+strconv.Itoa(uid), func(t *testing.T) {
			for _, q := range []string{"", "&status=pending", "&limit=1000"} {
				res := e.do(http.MethodGet, "/api/orders?userId="+strconv.Itoa(uid)+q, mallory, "", "")
				var got []oas.Order
				if err := jsonBody(res, &got); err != nil || res.StatusCode != http.StatusOK || len(got) != 0 || res.Header.Get("X-Total-Count") != "0" {
					t.Fatalf("status %d, %d orders, total %q (%v)", res.StatusCode, len(got), res.Header.Get("X-Total-Count"), err)
				}
			}
		})
		t.Run("user "+strconv.Itoa(uid), func(t *testing.T) {
			path := "/api/users/" + strconv.Itoa(uid)
			wantProblem(t, e.do(http.MethodGet, path, mallory, "", ""), http.StatusNotFound)
			wantProblem(t, e.do(http.MethodPut, path, mallory, "application/json", `{"name":"Mallory","email":"mallory@example.com"}`), http.StatusNotFound)
			wantProblem(t, e.do(http.MethodDelete, path, mallory, "", ""), http.StatusForbidden)
		})
	}
	t.Run("own list holds only own orders", func(t *testing.T) {
		res := e.do(http.MethodGet, "/api/orders?limit=1000", mallory, "", "")
		var got []oas.Order
		if err := jsonBody(res, &got); err != nil || len(got) != 1 || got[0].ID != own.Response.ID || res.Header.Get("X-Total-Count") != "1" {
			t.Fatalf("got %+v (%v)", got, err)
		}
	})
	t.Run("ordering for another customer", func(t *testing.T) {
		res := e.do(http.MethodPost, "/api/orders", mallory, "application/json",
			fmt.Sprintf(`{"userId":%d,"items":[{"productId":%d,"quantity":1}]}`, victimID, product))
		wantProblem(t, res, http.StatusForbidden)
	})

	after := e.rowCounts(t)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("table %s had %d rows, now %d", table, n, after[table])
		}
	}
	if s := e.stock(product); s != stockBefore {
		t.Errorf("stock %d, was %d", s, stockBefore)
	}
}

// jsonBody decodes a JSON answer into v.
func jsonBody(res *http.Response, v any) error {
	return json.NewDecoder(res.Body).Decode(v)
}

// TestAdminOperationsRefuseCustomersFirst checks that a customer calling an operation only
// an admin may call is refused with 403 whatever its request holds, and not told first
// what is wrong with a body or parameter it has no right to send.
func TestAdminOperationsRefuseCustomersFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customerToken()
	for _, req := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/users?limit=0", ""},
		{http.MethodPost, "/api/users", `{"name":"","email":"x@example.com","password":"secret1"}`},
		{http.MethodPost, "/api/users", `{}`},
		{http.MethodDelete, "/api/users/1", ""},
		{http.MethodPost, "/api/products", `{"name":"x","price":-1,"stock":1}`},
		{http.MethodPost, "/api/products", `{"name":"x","stock":1}`},
		{http.MethodPut, "/api/products/1", `{"name":"","price":1,"stock":1}`},
		{http.MethodDelete, "/api/products/1", ""},
		{http.MethodPut, "/api/orders/1", `{"status":"unknown"}`},
		{http.MethodPut, "/api/orders/1", `{}`},
		{http.MethodDelete, "/api/orders/1", ""},
	} {
		t.Run(req.method+" "+req.path+" "+req.body, func(t *testing.T) {
			wantProblem(t, e.do(req.method, req.path, cust, "application/json", req.body), http.StatusForbidden)
		})
	}
}
