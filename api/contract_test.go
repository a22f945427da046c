package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	entschema "entgo.io/ent/dialect/sql/schema"
	"github.com/ogen-go/ogen"

	"orderflow"
	"orderflow/api/oas"
	"orderflow/domain"
	entmigrate "orderflow/ent/migrate"
	"orderflow/events"
)

// TestMissingFieldIsRequired checks that a required field left out is said to be required in
// the words of the other field errors, not the decoder's.
func TestMissingFieldIsRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	for _, c := range []struct{ path, body, field string }{
		{"/api/products", `{"name":"x","price":1}`, "stock"},
		{"/api/orders", `{"items":[{"productId":1}]}`, "items[0].quantity"},
		{"/api/auth/login", `{"email":"a@example.com"}`, "password"},
	} {
		t.Run(c.path+" "+c.field, func(t *testing.T) {
			wantFieldError(t, problemBody(t, e.do(http.MethodPost, c.path, tok, "application/json", c.body), http.StatusBadRequest), c.field, "is required")
		})
	}
}

// TestFieldErrorsNameTheJSONPath checks that a field error inside an order's items names the
// field by its JSON path from the body, as the contract's FieldError says
// (`items[0].quantity`), whether the field is missing, repeated or out of bounds.
func TestFieldErrorsNameTheJSONPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok, _ := e.customerToken()
	p := e.product("1.00", 10)
	for _, c := range []struct{ name, body, field string }{
		{"quantity missing", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1},{"productId":%d}]}`, p, p+1), "items[1].quantity"},
		{"productId missing", `{"items":[{"quantity":1}]}`, "items[0].productId"},
		{"quantity repeated", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1,"quantity":2}]}`, p), "items[0].quantity"},
		{"productId repeated in the second item", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1},{"productId":1,"quantity":1,"productId":2}]}`, p), "items[1].productId"},
		{"items repeated", `{"items":[],"items":[]}`, "items"},
		{"quantity too large", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1000001}]}`, p), "items[0].quantity"},
		{"too many items", `{"items":[` + strings.Repeat(`{"productId":1,"quantity":1},`, 100) + `{"productId":1,"quantity":1}]}`, "items"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantFieldError(t, problemBody(t, e.do(http.MethodPost, "/api/orders", tok, "application/json", c.body), http.StatusBadRequest), c.field, "")
		})
	}
}

// TestBodyOutsideTheSchemaNamesTheField checks that a well-formed JSON body that breaks the
// contract's schema, with a value of the wrong type or a field the contract does not have,
// is answered as a validation error: the field by its JSON path and what is wrong with it,
// in the contract's words rather than the decoder's.
func TestBodyOutsideTheSchemaNamesTheField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	for _, c := range []struct{ name, path, body, field, message string }{
		{"unknown field", "/api/products", `{"name":"x","price":1,"stock":1,"colour":"red"}`, "colour", "is not a field of this object"},
		{"unknown field in the second item", "/api/orders", `{"items":[{"productId":1,"quantity":1},{"productId":2,"quantity":1,"price":{"a":1}}]}`, "items[1].price", "is not a field of this object"},
		{"quantity as a string in the second item", "/api/orders", `{"items":[{"productId":1,"quantity":1},{"productId":2,"quantity":"1"}]}`, "items[1].quantity", "must be an integer"},
		{"quantity an object", "/api/orders", `{"items":[{"productId":1,"quantity":{}}]}`, "items[0].quantity", "must be an integer"},
		{"userId true", "/api/orders", `{"userId":true,"items":[{"productId":1,"quantity":1}]}`, "userId", "must be an integer"},
		{"quantity fractional", "/api/orders", `{"items":[{"productId":1,"quantity":1.5}]}`, "items[0].quantity", "must be an integer"},
		{"items null", "/api/orders", `{"items":null}`, "items", "must be an array"},
		{"item a number", "/api/orders", `{"items":[{"productId":1,"quantity":1},7]}`, "items[1]", "must be an object"},
		{"stock fractional", "/api/products", `{"name":"x","price":1,"stock":1.5}`, "stock", "must be an integer"},
		{"productId out of range in the second item", "/api/orders", `{"items":[{"productId":1,"quantity":1},{"productId":99999999999999999999,"quantity":1}]}`, "items[1].productId", "is out of range"},
		{"stock out of range", "/api/products", `{"name":"x","price":1,"stock":99999999999999999999}`, "stock", "is out of range"},
		{"price a string", "/api/products", `{"name":"x","price":"1.00","stock":1}`, "price", "must be a number"},
		{"price null", "/api/products", `{"name":"x","price":null,"stock":1}`, "price", "must be a number"},
		{"description null", "/api/products", `{"name":"x","description":null,"price":1,"stock":1}`, "description", "must be a string"},
		{"name a number", "/api/products", `{"name":5,"price":1,"stock":1}`, "name", "must be a string"},
		{"email a number", "/api/auth/login", `{"email":5,"password":"secret1"}`, "email", "must be a string"},
		{"role a number", "/api/users", `{"name":"x","email":"x@example.com","password":"secret1","role":1}`, "role", "must be one of admin, customer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantFieldError(t, problemBody(t, e.do(http.MethodPost, c.path, tok, "application/json", c.body), http.StatusBadRequest), c.field, c.message)
		})
	}
	// Malformed JSON is not a validation error of a field.
	body := problemBody(t, e.do(http.MethodPost, "/api/products", tok, "application/json", `{"name":"x","price":1e,"stock":1}`), http.StatusBadRequest)
	if body["errors"] != nil {
		t.Errorf("errors %v for malformed JSON", body["errors"])
	}
	// It says where the JSON breaks, in words of JSON, not of the server's decoder.
	for _, c := range []struct{ body, detail string }{
		{`{"name":"x","price":1e,"stock":1}`, "The request body is not valid JSON: invalid character ',' in exponent of numeric literal (at byte 23)."},
		{`{"items": [{"productId": 3, "quantity": 2}`, "The request body is not valid JSON: unexpected end of JSON input (at byte 42)."},
		{"\ufeff" + `{"items":[]}`, "The request body is not valid JSON: invalid character 'ï' looking for beginning of value (at byte 1)."},
	} {
		body := problemBody(t, e.do(http.MethodPost, "/api/orders", tok, "application/json", c.body), http.StatusBadRequest)
		if body["detail"] != c.detail {
			t.Errorf("detail for %q = %q, want %q", c.body, body["detail"], c.detail)
		}
	}
}

// TestEveryBodyValueSaysItsType sends, for every value that a request body of the contract
// can hold (each field, array element and object, however deep), a body with a value of
// the wrong type there, and checks that the answer names it and says what the contract
// expects of it rather than "has the wrong type": a field added to openapi.yaml is covered
// without a line here.
func TestEveryBodyValueSaysItsType(t *testing.T) {
	t.Parallel()
	spec, err := ogen.Parse(orderflow.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	tok := e.adminToken()
	for path, item := range spec.Paths {
		url := strings.ReplaceAll(path, "{id}", "1")
		for method, op := range map[string]*ogen.Operation{
			http.MethodGet: item.Get, http.MethodPut: item.Put, http.MethodPost: item.Post,
			http.MethodDelete: item.Delete, http.MethodPatch: item.Patch,
		} {
			if op == nil || op.RequestBody == nil {
				continue
			}
			wrong := wrongTypedBodies(t, spec, op.RequestBody.Content["application/json"].Schema)
			if len(wrong) == 0 {
				t.Errorf("%s: no values found in its request body's schema", op.OperationID)
			}
			for field, w := range wrong {
				t.Run(op.OperationID+" "+field, func(t *testing.T) {
					problem := problemBody(t, e.do(method, url, tok, "application/json", w.body), http.StatusBadRequest)
					wantFieldError(t, problem, field, w.message)
				})
			}
		}
	}
}

// wrongTyped is a body with a value of the wrong type in one place, and what the answer
// says the value there must be.
type wrongTyped struct{ body, message string }

// wrongTypedBodies returns, by the JSON path of each value that a body of schema s can hold,
// a body with a value of the wrong type there. The schema of each value is found here by
// walking s, apart from the API's lookup by path; typeWords, tested apart, words it.
func wrongTypedBodies(t *testing.T, spec *ogen.Spec, s *ogen.Schema) map[string]wrongTyped {
	t.Helper()
	bodies := map[string]wrongTyped{}
	var walk func(s *ogen.Schema, field string, depth int, wrap func(string) string)
	walk = func(s *ogen.Schema, field string, depth int, wrap func(string) string) {
		for s != nil && s.Ref != "" {
			s = spec.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
		}
		if s == nil || depth > 10 {
			t.Fatalf("the schema of %q is missing or nested too deep", field)
		}
		if field != "" {
			// Any value but a string is wrong for a string, and a string for anything else.
			wrong := `"x"`
			if s.Type == "string" {
				wrong = "true"
			}
			bodies[field] = wrongTyped{wrap(wrong), typeWords(s)}
		}
		for _, p := range s.Properties {
			name := p.Name
			if field != "" {
				name = field + "." + p.Name
			}
			walk(p.Schema, name, depth+1, func(v string) string { return wrap(`{"` + p.Name + `":` + v + `}`) })
		}
		if s.Items != nil && s.Items.Item != nil {
			walk(s.Items.Item, field+"[0]", depth+1, func(v string) string { return wrap("[" + v + "]") })
		}
	}
	walk(s, "", 0, func(v string) string { return v })
	return bodies
}

// TestParameterGivenTwice checks that a parameter sent twice is refused, and named, rather
// than read as one of its values: a query parameter, and an Idempotency-Key, which a proxy
// that joins repeated headers into one would pass on as another key.
func TestParameterGivenTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	p := e.product("1.00", 10)
	wantOne := func(t *testing.T, res *http.Response, field string) {
		t.Helper()
		wantFieldError(t, problemBody(t, res, http.StatusBadRequest), field, "must be given only once")
	}
	t.Run("query", func(t *testing.T) {
		wantOne(t, e.do(http.MethodGet, "/api/orders?status=pending&status=expired", tok, "", ""), "status")
	})
	t.Run("Idempotency-Key", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/orders",
			strings.NewReader(fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1}]}`, p)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header["Idempotency-Key"] = []string{"first", "second"}
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		wantOne(t, res, "Idempotency-Key")
		if e.stock(p) != 10 {
			t.Errorf("stock %d, want 10", e.stock(p))
		}
	})
}

// TestMoneyErrorsSayTheRule checks that an amount out of the contract's range is answered in
// the words of the other field errors, with the bound, and that an order whose total would
// pass the largest amount says so, with the total.
func TestMoneyErrorsSayTheRule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	expensive := e.product("9999999999.99", 10)
	for _, c := range []struct{ name, path, body, field, message string }{
		{"price too large", "/api/products", `{"name":"x","price":10000000000,"stock":1}`, "price", "must be at most 9999999999.99"},
		{"price negative", "/api/products", `{"name":"x","price":-1,"stock":1}`, "price", "must not be negative"},
		{"price with cents of cents", "/api/products", `{"name":"x","price":1.001,"stock":1}`, "price", "must have at most two decimals"},
		{"total too large", "/api/orders", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":2}]}`, expensive), "items",
			"the order's total would be 19999999999.98, above the largest amount, 9999999999.99"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantFieldError(t, problemBody(t, e.do(http.MethodPost, c.path, tok, "application/json", c.body), http.StatusBadRequest), c.field, c.message)
		})
	}
}

// TestBodyNotAnObject checks that a body that is JSON, but not the object every operation
// takes (a client that serialized nothing sends null), is answered in those words, not in
// the decoder's.
func TestBodyNotAnObject(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	for _, path := range []string{"/api/orders", "/api/auth/login"} {
		for _, body := range []string{`null`, ` null `, `[]`, `[{"items":[]}]`, `"items"`, `1`, `true`} {
			t.Run(path+" "+body, func(t *testing.T) {
				got := problemBody(t, e.do(http.MethodPost, path, tok, "application/json", body), http.StatusBadRequest)
				if got["detail"] != "The request body must be a JSON object." {
					t.Errorf("detail %q", got["detail"])
				}
			})
		}
	}
}

// TestBodyMissing checks that a request that needs a body and sends none, or only
// whitespace, is told so, whatever Content-Type it names or leaves out: no media type is
// wrong where nothing was sent, and a client told that it was would set the header and only
// then learn of the body.
func TestBodyMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	for _, body := range []string{"", " \r\n\t"} {
		for _, contentType := range []string{"", "application/json", "text/plain"} {
			for _, c := range []struct{ method, path string }{
				{http.MethodPost, "/api/orders"},
				{http.MethodPost, "/api/auth/login"},
				{http.MethodPut, "/api/products/1"},
			} {
				t.Run(fmt.Sprintf("%s %s %s %q", c.method, c.path, contentType, body), func(t *testing.T) {
					got := problemBody(t, e.do(c.method, c.path, tok, contentType, body), http.StatusBadRequest)
					if got["detail"] != "A request body is required." {
						t.Errorf("detail %q", got["detail"])
					}
				})
			}
		}
	}
}

// TestUnknownQueryParameter checks that a query parameter the operation does not take is
// refused and named, as an unknown body field is, rather than ignored: a filter misspelled
// as user_id would otherwise list every user's orders as if they were the one user's.
func TestUnknownQueryParameter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	cust, custID := e.customerToken()
	p := e.product("1.00", 10)
	o, err := e.clientWith(cust).CreateOrder(ctx, &oas.OrderCreate{Items: items(p, 1)}, oas.CreateOrderParams{})
	if err != nil {
		t.Fatal(err)
	}
	order := "/api/orders/" + strconv.Itoa(o.Response.ID)
	for _, c := range []struct{ path, field, message string }{
		{"/api/orders?user_id=" + strconv.Itoa(custID), "user_id", "is not a parameter of this operation, which takes limit, offset, status and userId"},
		{"/api/orders?userID=" + strconv.Itoa(custID) + "&limit=5", "userID", "is not a parameter of this operation, which takes limit, offset, status and userId"},
		{"/api/products?page=2", "page", "is not a parameter of this operation, which takes limit and offset"},
		{order + "?expand=items", "expand", "is not a parameter of this operation, which takes none"},
	} {
		t.Run(c.path, func(t *testing.T) {
			wantFieldError(t, problemBody(t, e.do(http.MethodGet, c.path, tok, "", ""), http.StatusBadRequest), c.field, c.message)
		})
	}
	t.Run("known parameters", func(t *testing.T) {
		res := e.do(http.MethodGet, "/api/orders?userId="+strconv.Itoa(custID)+"&status=pending&limit=5&offset=0", tok, "", "")
		if res.StatusCode != http.StatusOK || res.Header.Get("X-Total-Count") != "1" {
			t.Errorf("status %d, X-Total-Count %q", res.StatusCode, res.Header.Get("X-Total-Count"))
		}
	})
	t.Run("a customer is refused an admin operation first", func(t *testing.T) {
		problemBody(t, e.do(http.MethodGet, "/api/users?foo=1", cust, "", ""), http.StatusForbidden)
	})
}

// TestMalformedQueryString: a query that does not parse whole is refused, not read without
// the pairs that did not parse, which would answer a filtered list unfiltered.
func TestMalformedQueryString(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	e.product("1.00", 10)
	e.product("2.00", 10)
	for _, c := range []struct{ name, path, cause string }{
		{"semicolon", "/api/orders?status=completed;", "invalid semicolon separator"},
		{"bad escape", "/api/products?limit=%ZZ", `invalid URL escape "%ZZ"`},
		{"bad escape beside a good pair", "/api/orders?status=completed&x=%zz", `invalid URL escape "%zz"`},
		{"too many parameters", "/api/products?" + strings.Repeat("limit=1&", 10_001) + "limit=1", "number of URL query parameters exceeded limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := problemBody(t, e.do(http.MethodGet, c.path, tok, "", ""), http.StatusBadRequest)
			detail, _ := got["detail"].(string)
			if !strings.HasPrefix(detail, "The query string is malformed") || !strings.Contains(detail, c.cause) {
				t.Errorf("detail %q, want the query string named malformed, with %q", detail, c.cause)
			}
		})
	}
	t.Run("escaped", func(t *testing.T) {
		res := e.do(http.MethodGet, "/api/products?limit=%31", tok, "", "")
		defer res.Body.Close()
		var page []json.RawMessage
		if err := json.NewDecoder(res.Body).Decode(&page); err != nil || res.StatusCode != http.StatusOK || len(page) != 1 {
			t.Errorf("status %d, %d products (%v), want 200 and limit=1's one", res.StatusCode, len(page), err)
		}
	})
}

// TestEveryFieldAtFaultIsNamed: a request with several fields at fault is answered with all
// of them, not with the first, so that a client fixes them in one go.
func TestEveryFieldAtFaultIsNamed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	// Few enough characters for the schema, too many bytes for a password.
	longPassword := strings.Repeat("é", domain.MaxPasswordBytes/2+1)
	for _, c := range []struct {
		name, path, tok, body string
		fields                []string
	}{
		// Each field passes the contract's schema and breaks a rule the handler checks.
		{"product", "/api/products", tok, `{"name":" ","description":"a\u0000b","price":0.001,"stock":1}`,
			[]string{"name", "description", "price"}},
		{"user", "/api/users", tok, `{"name":" ","email":"no-at-sign","password":"` + longPassword + `"}`,
			[]string{"name", "email", "password"}},
		{"user update", "/api/users/1", tok, `{"name":" ","email":"no-at-sign","password":"` + longPassword + `"}`,
			[]string{"name", "email", "password"}},
		{"login", "/api/auth/login", "", `{"email":"no-at-sign","password":"` + longPassword + `"}`,
			[]string{"email", "password"}},
		{"order", "/api/orders", tok, `{"userId":999999,"items":[{"productId":999998,"quantity":1},{"productId":999997,"quantity":1}]}`,
			[]string{"userId", "items[0].productId", "items[1].productId"}},
		{"order listing products twice", "/api/orders", tok, `{"items":[{"productId":1,"quantity":1},{"productId":1,"quantity":1},{"productId":2,"quantity":1},{"productId":2,"quantity":1}]}`,
			[]string{"items[1].productId", "items[3].productId"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			method := http.MethodPost
			if c.name == "user update" {
				method = http.MethodPut
			}
			body := problemBody(t, e.do(method, c.path, c.tok, "application/json", c.body), http.StatusBadRequest)
			errs, _ := body["errors"].([]any)
			var fields []string
			for _, f := range errs {
				m, _ := f.(map[string]any)
				name, _ := m["field"].(string)
				fields = append(fields, name)
			}
			if !slices.Equal(fields, c.fields) {
				t.Errorf("fields at fault %q, want %q (errors %v)", fields, c.fields, body["errors"])
			}
		})
	}
}

// TestContractLimitsAreDomains: the lengths that openapi.yaml states for users' and products'
// fields are the limits in domain, which the handlers and (through platform/migrate's tests)
// the CHECKs enforce; a limit changed in one place alone fails here.
func TestContractLimitsAreDomains(t *testing.T) {
	t.Parallel()
	spec, err := ogen.Parse(orderflow.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	type limits struct{ min, max uint64 }
	want := map[string]limits{
		"LoginRequest.email":       {0, domain.MaxEmailLength},
		"LoginRequest.password":    {domain.MinPasswordLength, 0},
		"UserCreate.name":          {1, domain.MaxNameLength},
		"UserCreate.email":         {0, domain.MaxEmailLength},
		"UserCreate.password":      {domain.MinPasswordLength, domain.MaxPasswordBytes},
		"UserUpdate.name":          {1, domain.MaxNameLength},
		"UserUpdate.email":         {0, domain.MaxEmailLength},
		"UserUpdate.password":      {domain.MinPasswordLength, domain.MaxPasswordBytes},
		"ProductInput.name":        {1, domain.MaxNameLength},
		"ProductInput.description": {0, domain.MaxDescriptionLength},
	}
	got := map[string]limits{}
	for name, schema := range spec.Components.Schemas {
		for _, p := range schema.Properties {
			if p.Schema == nil || (p.Schema.MinLength == nil && p.Schema.MaxLength == nil) {
				continue
			}
			var l limits
			if p.Schema.MinLength != nil {
				l.min = *p.Schema.MinLength
			}
			if p.Schema.MaxLength != nil {
				l.max = *p.Schema.MaxLength
			}
			got[name+"."+p.Name] = l
		}
	}
	for field, w := range want {
		if got[field] != w {
			t.Errorf("%s: openapi.yaml has minLength %d, maxLength %d; domain's limits are %d and %d (0: none)",
				field, got[field].min, got[field].max, w.min, w.max)
		}
	}
	for field := range got {
		if _, ok := want[field]; !ok {
			t.Errorf("%s: openapi.yaml limits its length; add it here with domain's limit", field)
		}
	}
}

// TestContractTransitionsAreDomains: the status changes that openapi.yaml lists as allowed
// are the ones domain.CanTransition allows.
func TestContractTransitionsAreDomains(t *testing.T) {
	t.Parallel()
	spec, err := ogen.Parse(orderflow.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	op := spec.Paths["/api/orders/{id}"].Put
	allowed, _, ok := strings.Cut(strings.TrimPrefix(op.Description, "Allowed: "), ".")
	if !ok || allowed == op.Description {
		t.Fatalf("updateOrderStatus's description does not begin with the allowed changes: %q", op.Description)
	}
	var listed []string
	for _, pair := range strings.Split(allowed, ",") {
		listed = append(listed, strings.Join(strings.Fields(pair), " "))
	}
	var want []string
	for _, from := range domain.Statuses {
		for _, to := range domain.Statuses {
			if domain.CanTransition(from, to) == nil {
				want = append(want, string(from)+" -> "+string(to))
			}
		}
	}
	slices.Sort(listed)
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("openapi.yaml allows %q, domain %q", listed, want)
	}
}

// TestEnumsAgree: the enums that the database's schema, the contract and the Go code each
// spell out have the same values: an order's status (ent's orders.status, the contract's
// OrderStatus, domain.Statuses) and a notification's event type (ent's
// notifications.event_type, the contract's NotificationEventType, the names of events.All).
// A value the contract lacks would be refused by the clients generated from it.
func TestEnumsAgree(t *testing.T) {
	t.Parallel()
	column := func(cols []*entschema.Column, name string) []string {
		for _, c := range cols {
			if c.Name == name {
				return c.Enums
			}
		}
		t.Fatalf("ent has no column %s", name)
		return nil
	}
	var statuses, contractStatuses, types, contractTypes []string
	for _, s := range domain.Statuses {
		statuses = append(statuses, string(s))
	}
	for _, s := range oas.OrderStatus("").AllValues() {
		contractStatuses = append(contractStatuses, string(s))
	}
	for _, e := range events.All() {
		types = append(types, e.Name())
	}
	for _, n := range oas.NotificationEventType("").AllValues() {
		contractTypes = append(contractTypes, string(n))
	}
	for _, c := range []struct {
		what          string
		ent, contract []string
		code          []string
	}{
		{"an order's status", column(entmigrate.OrdersColumns, "status"), contractStatuses, statuses},
		{"a notification's event type", column(entmigrate.NotificationsColumns, "event_type"), contractTypes, types},
	} {
		ent, contract, code := slices.Sorted(slices.Values(c.ent)), slices.Sorted(slices.Values(c.contract)), slices.Sorted(slices.Values(c.code))
		if !slices.Equal(ent, code) || !slices.Equal(contract, code) {
			t.Errorf("%s: ent %q, openapi.yaml %q, Go %q", c.what, ent, contract, code)
		}
	}
}
