package api

import (
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"orderflow/api/oas"
)

func TestParseIfMatch(t *testing.T) {
	t.Parallel()
	const cur = `"abc"`
	tests := []struct {
		header  string
		matches bool
		invalid bool
	}{
		{header: `*`, matches: true},
		{header: ` * `, matches: true},
		{header: `"abc"`, matches: true},
		{header: `"x", "abc"`, matches: true},
		{header: `"x","abc" ,`, matches: true},
		{header: `"x"`},
		{header: `W/"abc"`},                     // If-Match compares strongly: a weak tag never matches
		{header: `"a,b", "abc"`, matches: true}, // a comma inside a tag is part of it
		{header: `abc`, invalid: true},
		{header: `"abc`, invalid: true},
		{header: `"abc" "x"`, invalid: true},
		{header: `,`, invalid: true},
		{header: ``, invalid: true},
	}
	for _, tt := range tests {
		tags, err := parseIfMatch(tt.header)
		if (err != nil) != tt.invalid {
			t.Errorf("parseIfMatch(%q) error %v, want invalid %t", tt.header, err, tt.invalid)
			continue
		}
		if got := tags.matches(cur); err == nil && got != tt.matches {
			t.Errorf("parseIfMatch(%q).matches(%s) = %t, want %t", tt.header, cur, got, tt.matches)
		}
	}
}

// TestProductReplacedOnlyAsRead: a replacement with If-Match changes the product only as the
// client read it. An order's reservation or release since then changes the ETag, so a stock
// computed from the earlier read is refused with 412 instead of undoing it.
func TestProductReplacedOnlyAsRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, _ := e.customer()
	read := func(id int) (oas.Product, string) {
		t.Helper()
		res, err := e.admin.GetProduct(ctx, oas.GetProductParams{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if res.ETag == "" {
			t.Fatalf("product %d read without an ETag", id)
		}
		return res.Response, res.ETag
	}
	// repriced is p with a new price and the stock as read, as an edit form sends it.
	repriced := func(p oas.Product) *oas.ProductInput {
		return &oas.ProductInput{Name: p.Name, Price: money("6.00"), Stock: p.Stock}
	}
	ifMatch := func(id int, tag string) oas.UpdateProductParams {
		return oas.UpdateProductParams{ID: id, IfMatch: oas.NewOptString(tag)}
	}

	t.Run("a reservation since the read", func(t *testing.T) {
		created, err := e.admin.CreateProduct(ctx, &oas.ProductInput{Name: "Lamp", Price: money("5.00"), Stock: 10})
		if err != nil {
			t.Fatal(err)
		}
		id := created.Response.ID
		p, tag := read(id)
		if created.ETag != tag {
			t.Errorf("created with ETag %s, read with %s", created.ETag, tag)
		}
		if _, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(id, 3)}, oas.CreateOrderParams{}); err != nil {
			t.Fatal(err)
		}
		_, err = e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, tag))
		wantStatus(t, err, http.StatusPreconditionFailed)
		if got, _ := read(id); got.Stock != 7 || !moneyEq(got.Price, "5.00") {
			t.Fatalf("after a refused replacement: %+v, want stock 7 and price 5.00", got)
		}

		p, tag = read(id)
		res, err := e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, tag))
		if err != nil {
			t.Fatal(err)
		}
		if res.Response.Stock != 7 || !moneyEq(res.Response.Price, "6.00") {
			t.Errorf("replaced: %+v", res.Response)
		}
		if _, now := read(id); res.ETag != now || res.ETag == tag {
			t.Errorf("replaced with ETag %s; read before %s, after %s", res.ETag, tag, now)
		}
	})

	t.Run("a release since the read", func(t *testing.T) {
		id := e.product("5.00", 10)
		o, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(id, 3)}, oas.CreateOrderParams{})
		if err != nil {
			t.Fatal(err)
		}
		p, tag := read(id)
		if err := e.admin.DeleteOrder(ctx, oas.DeleteOrderParams{ID: o.Response.ID}); err != nil {
			t.Fatal(err)
		}
		_, err = e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, tag))
		wantStatus(t, err, http.StatusPreconditionFailed)
		if got := e.stock(id); got != 10 {
			t.Errorf("stock %d after a refused replacement, want the 10 released", got)
		}
	})

	t.Run("a release past the largest stock set before", func(t *testing.T) {
		id := e.product("5.00", 1_000_000)
		o, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(id, 1_000_000)}, oas.CreateOrderParams{})
		if err != nil {
			t.Fatal(err)
		}
		p, tag := read(id)
		p.Stock = math.MaxInt32
		if _, err := e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, tag)); err != nil {
			t.Fatal(err)
		}
		if err := e.admin.DeleteOrder(ctx, oas.DeleteOrderParams{ID: o.Response.ID}); err != nil {
			t.Fatal(err)
		}
		p, tag = read(id)
		if p.Stock != math.MaxInt32+1_000_000 {
			t.Fatalf("stock %d after the release, want %d", p.Stock, math.MaxInt32+1_000_000)
		}
		if _, err := e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, tag)); err != nil {
			t.Errorf("the stock as read, sent back: %v", err)
		}
	})

	t.Run("any version, one of several, a weak tag", func(t *testing.T) {
		id := e.product("5.00", 10)
		p, tag := read(id)
		if _, err := e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, `"elsewhere", `+tag)); err != nil {
			t.Fatalf("one of several tags: %v", err)
		}
		p, tag = read(id)
		_, err := e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, "W/"+tag))
		if prob := wantStatus(t, err, http.StatusPreconditionFailed); !strings.Contains(prob.Detail.Value, "a weak tag") {
			t.Errorf("the current ETag as a weak tag: detail %q does not say why it does not match", prob.Detail.Value)
		}
		_, err = e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, `W/"elsewhere"`))
		if prob := wantStatus(t, err, http.StatusPreconditionFailed); !strings.Contains(prob.Detail.Value, "has changed") {
			t.Errorf("another weak tag: detail %q", prob.Detail.Value)
		}
		if _, err := e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, "*")); err != nil {
			t.Fatalf("*: %v", err)
		}
	})

	t.Run("a malformed header, a missing product", func(t *testing.T) {
		id := e.product("5.00", 10)
		p, _ := read(id)
		_, err := e.admin.UpdateProduct(ctx, repriced(p), ifMatch(id, "abc"))
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "If-Match")
		_, err = e.admin.UpdateProduct(ctx, repriced(p), ifMatch(999999, `"abc"`))
		wantStatus(t, err, http.StatusNotFound)
	})
}

// TestIfMatchOnSeveralLines: an If-Match sent on several header lines is one list.
func TestIfMatchOnSeveralLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.product("5.00", 10)
	res, err := e.admin.GetProduct(ctx, oas.GetProductParams{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, e.srv.URL+"/api/products/"+strconv.Itoa(id),
		strings.NewReader(`{"name": "Lamp", "price": 6, "stock": 10}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.adminToken())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Add("If-Match", `"stale"`)
	req.Header.Add("If-Match", res.ETag)
	answer, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer answer.Body.Close()
	if answer.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200: the second line holds the current ETag", answer.StatusCode)
	}
}

// TestProductETagCoversEveryField changes each field of a product in turn and checks that
// its ETag changes: a field added to the contract's Product but not to productETag would let
// an If-Match written against an older read replace the new field's value unseen.
func TestProductETagCoversEveryField(t *testing.T) {
	t.Parallel()
	base := oas.Product{ID: 1, Name: "Lamp", Description: oas.NewOptString("Brass"),
		Price: oas.Money(decimal.RequireFromString("9.99")), Stock: 3,
		CreatedAt: time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)}
	typ := reflect.TypeFor[oas.Product]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		changed := base
		v := reflect.ValueOf(&changed).Elem().Field(i)
		switch x := v.Addr().Interface().(type) {
		case *int:
			*x++
		case *string:
			*x += "x"
		case *oas.OptString:
			x.Value += "x"
		case *oas.Money:
			*x = oas.Money(decimal.Decimal(*x).Add(decimal.New(1, -2)))
		case *time.Time:
			*x = x.Add(time.Microsecond)
		default:
			t.Fatalf("field %s of type %s: the test does not know how to change it; add a case, and add the field to productETag", f.Name, f.Type)
		}
		if productETag(changed) == productETag(base) {
			t.Errorf("a product whose %s changed keeps its ETag: add the field to productETag", f.Name)
		}
	}
	unset := base
	unset.Description = oas.OptString{Value: "Brass"} // absent, with a stale value behind it
	if productETag(unset) == productETag(base) {
		t.Error("a product whose description was removed keeps its ETag")
	}
}
