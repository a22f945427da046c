package api

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"orderflow/api/oas"
)

// TestContractAndHandlerFaultsInOneAnswer sends, for every operation whose handler checks
// fields, a body that breaks both a rule of the contract and one that only the handler
// checks, and requires one answer naming every field at fault, in the contract's order, with
// the contract's message where both name a field.
func TestContractAndHandlerFaultsInOneAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	for _, c := range []struct {
		name, method, path, body string
		// want holds each field at fault by its message, in the order of the answer.
		want [][2]string
	}{
		{"login", http.MethodPost, "/api/auth/login", `{"email":"no-at-sign","password":"x"}`, [][2]string{
			{"email", "must be a valid e-mail address"},
			{"password", "must have at least 6 characters"},
		}},
		{"createUser", http.MethodPost, "/api/users", `{"name":"","email":"","password":""}`, [][2]string{
			{"name", "must not be empty"},
			{"email", "must be a valid e-mail address, not empty"},
			{"password", "must have at least 6 characters"},
		}},
		{"createUser with a field missing", http.MethodPost, "/api/users", `{"role":"boss","email":"no-at-sign","name":""}`, [][2]string{
			// The decoder stops at the missing field, before the contract's other rules:
			// they are named too.
			{"name", "must not be empty"},
			{"email", "must be a valid e-mail address"},
			{"password", "is required"},
			{"role", "must be one of admin, customer"},
		}},
		{"updateUser", http.MethodPut, "/api/users/1", `{"name":"","email":"no-at-sign","role":"boss"}`, [][2]string{
			{"name", "must not be empty"},
			{"email", "must be a valid e-mail address"},
			{"role", "must be one of admin, customer"},
		}},
		{"createProduct", http.MethodPost, "/api/products", `{"name":" ","price":0.001,"stock":-1}`, [][2]string{
			{"name", "must not be blank"},
			{"price", "must have at most two decimals"},
			{"stock", "must be at least 0"},
		}},
		{"createProduct with an invisible name", http.MethodPost, "/api/products", `{"name":"\u200b\u200d","price":1,"stock":1}`, [][2]string{
			{"name", "must not be blank"},
		}},
		{"updateProduct", http.MethodPut, "/api/products/1", `{"stock":-1,"price":1,"description":"a\u0000b","name":""}`, [][2]string{
			{"name", "must not be empty"},
			{"description", "must be valid UTF-8 without NUL characters"},
			{"stock", "must be at least 0"},
		}},
		{"createOrder", http.MethodPost, "/api/orders", `{"items":[{"productId":1,"quantity":0},{"productId":2,"quantity":1},{"productId":2,"quantity":1}]}`, [][2]string{
			{"items[0].quantity", "must be at least 1"},
			{"items[2].productId", "product is listed more than once"},
		}},
		{"createOrder with too many items", http.MethodPost, "/api/orders", `{"items":[` + strings.Repeat(`{"productId":1,"quantity":1},`, 100) + `{"productId":1,"quantity":1}]}`, [][2]string{
			// Refused whole, the items are not looked into: neither are they by the contract.
			{"items", "must have at most 100 items"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := problemBody(t, e.do(c.method, c.path, tok, "application/json", c.body), http.StatusBadRequest)
			var got [][2]string
			for _, f := range body["errors"].([]any) {
				m, _ := f.(map[string]any)
				field, _ := m["field"].(string)
				message, _ := m["message"].(string)
				got = append(got, [2]string{field, message})
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("errors %q, want %q", got, c.want)
			}
		})
	}
}

// TestEveryBodyHasItsChecks: every operation of the contract with a request body has an entry
// in bodyChecks, its field checks or nil for none, so that a new operation's checks are not
// left out of the answer to a body that the contract refuses; and every entry is such an
// operation's.
func TestEveryBodyHasItsChecks(t *testing.T) {
	t.Parallel()
	withBody := contractBodies().bodies
	if len(withBody) == 0 {
		t.Fatal("no operation of the contract has a request body")
	}
	for _, op := range slices.Sorted(maps.Keys(withBody)) {
		if _, ok := bodyChecks[op]; !ok {
			t.Errorf("%s: not in bodyChecks; add its handler's field checks, or nil if it has none", op)
		}
	}
	for _, op := range slices.Sorted(maps.Keys(bodyChecks)) {
		if _, ok := withBody[op]; !ok {
			t.Errorf("bodyChecks has %s, which is no operation of the contract with a request body", op)
		}
	}
}

// TestSortAsContract checks the order of field errors: the contract's order of an object's
// members, an array's elements by index, a value before those inside it, and a field that
// the contract does not have after the others of its object.
func TestSortAsContract(t *testing.T) {
	t.Parallel()
	var fields []oas.FieldError
	for _, name := range []string{"items[10].quantity", "nope", "items[2].productId", "items", "items[2].quantity", "userId", "items[2].nope"} {
		fields = append(fields, oas.FieldError{Field: name})
	}
	sortAsContract("createOrder", fields)
	var got []string
	for _, f := range fields {
		got = append(got, f.Field)
	}
	want := []string{"userId", "items", "items[2].productId", "items[2].quantity", "items[2].nope", "items[10].quantity", "nope"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted %s, want %s", strings.Join(got, " "), strings.Join(want, " "))
	}
}
