package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"orderflow"
	"orderflow/api/oas"
)

// problemBody reads a raw problem+json answer.
func problemBody(t *testing.T, res *http.Response, status int) map[string]any {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status %d, want %d", res.StatusCode, status)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body["status"] != float64(status) || body["title"] == "" || body["type"] == "" {
		t.Fatalf("problem body %v", body)
	}
	return body
}

// wantFieldError checks that a problem body holds exactly one field error, naming field,
// and, unless message is "", saying message.
func wantFieldError(t *testing.T, body map[string]any, field, message string) {
	t.Helper()
	errs, _ := body["errors"].([]any)
	if len(errs) != 1 {
		t.Fatalf("errors %v (detail %q), want one", body["errors"], body["detail"])
	}
	f, _ := errs[0].(map[string]any)
	if f["field"] != field || (message != "" && f["message"] != message) {
		t.Errorf("error %v, want field %q with message %q", f, field, message)
	}
}

func TestProtocol(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()

	t.Run("unknown route", func(t *testing.T) {
		problemBody(t, e.do(http.MethodGet, "/api/nothing-here", tok, "", ""), http.StatusNotFound)
	})
	for _, path := range []string{"/api/products/", "/api/users/", "/api/orders/"} {
		t.Run("no id after "+path, func(t *testing.T) {
			problemBody(t, e.do(http.MethodGet, path, tok, "", ""), http.StatusNotFound)
		})
	}
	t.Run("method not allowed", func(t *testing.T) {
		res := e.do(http.MethodPatch, "/api/products", tok, "", "")
		problemBody(t, res, http.StatusMethodNotAllowed)
		if got := res.Header.Get("Allow"); got != "GET,POST,HEAD" {
			t.Errorf("Allow %q, want GET,POST,HEAD", got)
		}
		res = e.do(http.MethodHead, "/api/auth/login", "", "", "")
		if got := res.Header.Get("Allow"); res.StatusCode != http.StatusMethodNotAllowed || got != "POST" {
			t.Errorf("HEAD where only POST is served: status %d, Allow %q", res.StatusCode, got)
		}
	})
	t.Run("HEAD as GET without the body", func(t *testing.T) {
		id := strconv.Itoa(e.product("1.00", 10))
		get := e.do(http.MethodGet, "/api/products/"+id, tok, "", "")
		head := e.do(http.MethodHead, "/api/products/"+id, tok, "", "")
		body, err := io.ReadAll(head.Body)
		if err != nil || head.StatusCode != http.StatusOK || len(body) != 0 {
			t.Errorf("HEAD: status %d, %d bytes of body (%v), want 200 and none", head.StatusCode, len(body), err)
		}
		for _, h := range []string{"ETag", "Content-Type"} {
			if head.Header.Get(h) != get.Header.Get(h) || head.Header.Get(h) == "" {
				t.Errorf("%s: HEAD %q, GET %q", h, head.Header.Get(h), get.Header.Get(h))
			}
		}
		if res := e.do(http.MethodHead, "/api/products/"+id, "", "", ""); res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("HEAD without a token: status %d, WWW-Authenticate %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("unknown field", func(t *testing.T) {
		res := e.do(http.MethodPost, "/api/products", tok, "application/json",
			`{"name":"x","price":1,"stock":1,"colour":"red"}`)
		problemBody(t, res, http.StatusBadRequest)
	})
	t.Run("malformed JSON", func(t *testing.T) {
		problemBody(t, e.do(http.MethodPost, "/api/products", tok, "application/json", `{"name":`), http.StatusBadRequest)
	})
	t.Run("money as a string", func(t *testing.T) {
		problemBody(t, e.do(http.MethodPost, "/api/products", tok, "application/json",
			`{"name":"x","price":"1.00","stock":1}`), http.StatusBadRequest)
	})
	for name, contentType := range map[string]string{"no content type": "", "malformed content type": "application/json; charset"} {
		t.Run(name, func(t *testing.T) {
			body := problemBody(t, e.do(http.MethodPost, "/api/products", tok, contentType,
				`{"name":"x","price":1,"stock":1}`), http.StatusUnsupportedMediaType)
			if detail, _ := body["detail"].(string); strings.Contains(detail, "CreateProduct") || strings.Contains(detail, "mime") {
				t.Errorf("detail %q names the server's internals", detail)
			}
		})
	}
	t.Run("half of a surrogate pair", func(t *testing.T) {
		body := problemBody(t, e.do(http.MethodPost, "/api/products", tok, "application/json",
			`{"name":"\ud800","price":1,"stock":1}`), http.StatusBadRequest)
		if detail, _ := body["detail"].(string); !strings.Contains(detail, `half of a UTF-16 surrogate pair (the \u escape at byte 9)`) {
			t.Errorf("detail %q", detail)
		}
		res := e.do(http.MethodPost, "/api/products", tok, "application/json", `{"name":"\ud83d\ude00","price":1,"stock":1}`)
		var p oas.Product
		if err := json.NewDecoder(res.Body).Decode(&p); err != nil || res.StatusCode != http.StatusCreated || p.Name != "\U0001F600" {
			t.Errorf("a whole pair: status %d, name %q (%v)", res.StatusCode, p.Name, err)
		}
	})
	t.Run("charset", func(t *testing.T) {
		body := problemBody(t, e.do(http.MethodPost, "/api/products", tok, "application/json; charset=latin1",
			"{\"name\":\"caf\xe9\",\"price\":1,\"stock\":1}"), http.StatusUnsupportedMediaType)
		if detail, _ := body["detail"].(string); detail != "The request body must be application/json in UTF-8, not in charset latin1." {
			t.Errorf("detail %q", detail)
		}
		utf16 := "\xff\xfe{\x00\"\x00n\x00a\x00m\x00e\x00\"\x00:\x001\x00}\x00"
		problemBody(t, e.do(http.MethodPost, "/api/products", tok, "application/json; charset=utf-16", utf16), http.StatusUnsupportedMediaType)
		for _, charset := range []string{"utf-8", "UTF-8", "utf8", "US-ASCII"} {
			res := e.do(http.MethodPost, "/api/products", tok, "application/json; charset="+charset, `{"name":"café","price":1,"stock":1}`)
			if res.StatusCode != http.StatusCreated {
				t.Errorf("charset=%s: status %d", charset, res.StatusCode)
			}
		}
	})
	t.Run("body over the limit", func(t *testing.T) {
		big := `{"name":"x","price":1,"stock":1,"description":"` + strings.Repeat("a", int(e.cfg.HTTP.MaxBodyBytes)) + `"}`
		problemBody(t, e.do(http.MethodPost, "/api/products", tok, "application/json", big), http.StatusRequestEntityTooLarge)
	})
	t.Run("chunked body over the limit", func(t *testing.T) {
		big := `{"name":"x","price":1,"stock":1,"description":"` + strings.Repeat("a", int(e.cfg.HTTP.MaxBodyBytes)) + `"}`
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/products", io.MultiReader(strings.NewReader(big)))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		problemBody(t, res, http.StatusRequestEntityTooLarge)
	})
	t.Run("bad path parameter", func(t *testing.T) {
		wantFieldError(t, problemBody(t, e.do(http.MethodGet, "/api/products/abc", tok, "", ""), http.StatusBadRequest), "id", "")
	})
	for _, c := range []struct{ path, field, message string }{
		{"/api/products/abc", "id", "must be an integer"},
		{"/api/orders/9223372036854775808", "id", "is out of range"},
		{"/api/products?limit=1.5", "limit", "must be an integer"},
		{"/api/orders?userId=me", "userId", "must be an integer"},
	} {
		t.Run("parameter not an integer: "+c.path, func(t *testing.T) {
			wantFieldError(t, problemBody(t, e.do(http.MethodGet, c.path, tok, "", ""), http.StatusBadRequest), c.field, c.message)
		})
	}
	for _, c := range []struct{ method, path, body, field, message string }{
		{http.MethodGet, "/api/products?limit=0", "", "limit", "must be at least 1"},
		// A minimum of one is said as the handlers' own checks say it.
		{http.MethodPost, "/api/products", `{"name":"","price":1,"stock":1}`, "name", "must not be empty"},
		{http.MethodPost, "/api/orders", `{"items":[]}`, "items", "must not be empty"},
		{http.MethodGet, "/api/products?limit=1001", "", "limit", "must be at most 1000"},
		{http.MethodGet, "/api/users?offset=-1", "", "offset", "must be at least 0"},
		{http.MethodGet, "/api/orders/0", "", "id", "must be at least 1"},
		{http.MethodPost, "/api/products", `{"name":"x","price":1,"stock":9007199254740992}`, "stock", "must be at most 9007199254740991"},
		{http.MethodPost, "/api/orders", `{"items":[{"productId":1,"quantity":0}]}`, "items[0].quantity", "must be at least 1"},
		{http.MethodGet, "/api/orders?status=unknown", "", "status", "must be one of pending, processing, completed, expired"},
		{http.MethodPut, "/api/orders/1", `{"status":"unknown"}`, "status", "must be one of pending, processing, completed, expired"},
		{http.MethodPost, "/api/users", `{"name":"x","email":"x@example.com","password":"secret1","role":"root"}`, "role", "must be one of admin, customer"},
	} {
		t.Run("value outside the contract: "+c.method+" "+c.path+" "+c.body, func(t *testing.T) {
			wantFieldError(t, problemBody(t, e.do(c.method, c.path, tok, "application/json", c.body), http.StatusBadRequest), c.field, c.message)
		})
	}
	t.Run("openapi.yaml", func(t *testing.T) {
		res := e.do(http.MethodGet, "/openapi.yaml", "", "", "")
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || string(b) != string(orderflow.OpenAPI) || !strings.HasPrefix(string(b), "openapi: 3") {
			t.Errorf("GET /openapi.yaml: %d, %d bytes", res.StatusCode, len(b))
		}
	})
}

// TestNotFoundNamesTheResource checks that every 404 of an operation says which resource
// does not exist, and that a customer asking for another's order or account gets the same
// answer as for one that does not exist.
func TestNotFoundNamesTheResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.adminToken()
	cust, custID := e.customerToken()
	owner, _ := e.customer()
	pid := e.product("1.00", 10)
	other, err := owner.CreateOrder(ctx, &oas.OrderCreate{Items: items(pid, 1)}, oas.CreateOrderParams{})
	if err != nil {
		t.Fatal(err)
	}
	otherOrder := strconv.Itoa(other.Response.ID)
	const missing = "999999"
	tests := []struct {
		method, path, tok, body, detail string
	}{
		{http.MethodGet, "/api/orders/" + missing, admin, "", "Order 999999 does not exist."},
		{http.MethodPut, "/api/orders/" + missing, admin, `{"status":"expired"}`, "Order 999999 does not exist."},
		{http.MethodDelete, "/api/orders/" + missing, admin, "", "Order 999999 does not exist."},
		{http.MethodGet, "/api/orders/" + missing + "/notifications", admin, "", "Order 999999 does not exist."},
		{http.MethodGet, "/api/orders/" + otherOrder, cust, "", "Order " + otherOrder + " does not exist."},
		{http.MethodGet, "/api/orders/" + otherOrder + "/notifications", cust, "", "Order " + otherOrder + " does not exist."},
		{http.MethodGet, "/api/products/" + missing, admin, "", "Product 999999 does not exist."},
		{http.MethodPut, "/api/products/" + missing, admin, `{"name":"x","price":1,"stock":1}`, "Product 999999 does not exist."},
		{http.MethodDelete, "/api/products/" + missing, admin, "", "Product 999999 does not exist."},
		{http.MethodGet, "/api/users/" + missing, admin, "", "User 999999 does not exist."},
		{http.MethodPut, "/api/users/" + missing, admin, `{"name":"x","email":"x@example.com"}`, "User 999999 does not exist."},
		{http.MethodDelete, "/api/users/" + missing, admin, "", "User 999999 does not exist."},
		{http.MethodGet, "/api/users/" + strconv.Itoa(e.adminID), cust, "", "User " + strconv.Itoa(e.adminID) + " does not exist."},
		{http.MethodPut, "/api/users/" + strconv.Itoa(e.adminID), cust, `{"name":"x","email":"x@example.com"}`, "User " + strconv.Itoa(e.adminID) + " does not exist."},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			body := problemBody(t, e.do(tt.method, tt.path, tt.tok, "application/json", tt.body), http.StatusNotFound)
			if body["detail"] != tt.detail {
				t.Errorf("detail %q, want %q", body["detail"], tt.detail)
			}
		})
	}
	if _, err := e.clientWith(cust).GetUser(ctx, oas.GetUserParams{ID: custID}); err != nil {
		t.Errorf("own account: %v", err)
	}
}

// TestContractNamesEveryStatus checks that openapi.yaml says when each status that the API
// answers with is given, those that ogen's router and the body limit give included.
func TestContractNamesEveryStatus(t *testing.T) {
	t.Parallel()
	for _, status := range []int{
		http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusConflict, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity, http.StatusTooManyRequests,
		http.StatusServiceUnavailable,
	} {
		if !strings.Contains(string(orderflow.OpenAPI), " "+strconv.Itoa(status)) {
			t.Errorf("openapi.yaml does not say when the API answers %d", status)
		}
	}
}

// TestAnswersAreNotStored: every answer under /api/ is for one caller (a token, a user's
// orders) or about one request, so none may be kept by a cache between the client and the
// API, or in the browser's; and none may be read as another type than the one it names,
// since some repeat what the request held (a path, a field).
func TestAnswersAreNotStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, id := e.customerToken()
	login := `{"email":` + strconv.Quote(e.cfg.Admin.Email) + `,"password":` + strconv.Quote(e.cfg.Admin.Password) + `}`
	big := `{"name":"` + strings.Repeat("x", int(e.cfg.HTTP.MaxBodyBytes)) + `"}`
	for _, req := range []struct {
		method, path, tok, body string
		status                  int
	}{
		{http.MethodPost, "/api/auth/login", "", login, http.StatusOK},
		{http.MethodPost, "/api/auth/login", "", `{"email":"nobody@example.com","password":"wrong-password"}`, http.StatusUnauthorized},
		{http.MethodGet, "/api/users/" + strconv.Itoa(id), tok, "", http.StatusOK},
		{http.MethodGet, "/api/orders", tok, "", http.StatusOK},
		{http.MethodGet, "/api/products", "", "", http.StatusUnauthorized},
		{http.MethodGet, "/api/<b>nothing</b>", tok, "", http.StatusNotFound},
		{http.MethodPatch, "/api/products", tok, "", http.StatusMethodNotAllowed},
		{http.MethodPut, "/api/users/" + strconv.Itoa(id), tok, big, http.StatusRequestEntityTooLarge},
	} {
		t.Run(req.method+" "+req.path, func(t *testing.T) {
			res := e.do(req.method, req.path, req.tok, "application/json", req.body)
			if res.StatusCode != req.status {
				t.Fatalf("status %d, want %d", res.StatusCode, req.status)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if n := res.Header.Get("X-Content-Type-Options"); n != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", n)
			}
		})
	}
}
