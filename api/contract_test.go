package api

import (
	"fmt"
	"net/http"
	"testing"
)

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
	} {
		t.Run(c.name, func(t *testing.T) {
			body := problemBody(t, e.do(http.MethodPost, "/api/orders", tok, "application/json", c.body), http.StatusBadRequest)
			errs, _ := body["errors"].([]any)
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", body["errors"])
			}
			if f := errs[0].(map[string]any); f["field"] != c.field {
				t.Errorf("error %v, want field %q", f, c.field)
			}
		})
	}
}
