package events

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

var at = time.Date(2026, 12, 1, 10, 30, 0, 123456000, time.UTC)

func money(s string) Money { return NewMoney(decimal.RequireFromString(s)) }

// samples holds one valid event of each type.
func samples() []Event {
	return []Event{
		OrderCreated{OrderID: 7, UserID: 3, Total: money("209.97"), CreatedAt: at, Items: []Item{
			{ProductID: 1, Quantity: 2, Price: money("99.99")},
			{ProductID: 2, Quantity: 1, Price: money("9.99")},
		}},
		OrderCompleted{OrderID: 7, UserID: 3, Total: money("10"), CompletedAt: at},
		OrderExpired{OrderID: 7, UserID: 3, Total: money("0.30"), ExpiredAt: at, ExpiredAfter: (10 * time.Minute).String()},
	}
}

func encode(t *testing.T, e Event) []byte {
	t.Helper()
	env, err := NewEnvelope("0b4d9a4c-6f0e-4d5e-9a51-6c1f1d1c2a10", SourceAPI, at, e)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, e := range samples() {
		t.Run(e.Name(), func(t *testing.T) {
			t.Parallel()
			body := encode(t, e)
			env, got, err := Decode(body)
			if err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			// Decimals compare by value, not by representation: compare the encodings.
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(e)
			if reflect.TypeOf(got) != reflect.TypeOf(e) || string(gotJSON) != string(wantJSON) {
				t.Errorf("decoded %T %s, want %T %s", got, gotJSON, e, wantJSON)
			}
			want := Envelope{SpecVersion: "1.0", ID: "0b4d9a4c-6f0e-4d5e-9a51-6c1f1d1c2a10", Source: "orderflow/api", Type: e.Type(), Time: at, DataContentType: "application/json"}
			env.Data = nil
			if !reflect.DeepEqual(env, want) {
				t.Errorf("envelope %+v, want %+v", env, want)
			}
		})
	}
}

func TestEncodingShape(t *testing.T) {
	t.Parallel()
	body := encode(t, samples()[0])
	want := `{"specversion":"1.0","id":"0b4d9a4c-6f0e-4d5e-9a51-6c1f1d1c2a10","source":"orderflow/api",` +
		`"type":"orderflow.order.created.v1","time":"2026-12-01T10:30:00.123456Z","datacontenttype":"application/json",` +
		`"data":{"orderId":7,"userId":3,"total":209.97,"items":[{"productId":1,"quantity":2,"price":99.99},` +
		`{"productId":2,"quantity":1,"price":9.99}],"createdAt":"2026-12-01T10:30:00.123456Z"}}`
	if string(body) != want {
		t.Errorf("got  %s\nwant %s", body, want)
	}
}

func TestEventIdentity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e                   Event
		name, key, typeName string
	}{
		{OrderCreated{}, "OrderCreated", "order.created", "orderflow.order.created.v1"},
		{&OrderCompleted{}, "OrderCompleted", "order.completed", "orderflow.order.completed.v1"},
		{OrderExpired{}, "OrderExpired", "order.expired", "orderflow.order.expired.v1"},
	}
	for _, tt := range tests {
		if tt.e.Name() != tt.name || tt.e.RoutingKey() != tt.key || tt.e.Type() != tt.typeName {
			t.Errorf("%T: got %s %s %s", tt.e, tt.e.Name(), tt.e.RoutingKey(), tt.e.Type())
		}
	}
}

func TestNewEnvelopeRejectsInvalidEvents(t *testing.T) {
	t.Parallel()
	tests := map[string]Event{
		"nil":                  nil,
		"no order id":          OrderCompleted{UserID: 1, Total: money("1"), CompletedAt: at},
		"negative total":       OrderCompleted{OrderID: 1, UserID: 1, Total: money("-1"), CompletedAt: at},
		"no time":              OrderCompleted{OrderID: 1, UserID: 1, Total: money("1")},
		"no items":             OrderCreated{OrderID: 1, UserID: 1, Total: money("1"), CreatedAt: at},
		"zero quantity":        OrderCreated{OrderID: 1, UserID: 1, Total: money("1"), CreatedAt: at, Items: []Item{{ProductID: 1, Price: money("1")}}},
		"bad expired after":    OrderExpired{OrderID: 1, UserID: 1, Total: money("1"), ExpiredAt: at, ExpiredAfter: "ten minutes"},
		"zero expired after":   OrderExpired{OrderID: 1, UserID: 1, Total: money("1"), ExpiredAt: at, ExpiredAfter: "0s"},
		"three decimal amount": OrderCompleted{OrderID: 1, UserID: 1, Total: money("1.001"), CompletedAt: at},
	}
	for name, e := range tests {
		if _, err := NewEnvelope("id", SourceAPI, at, e); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := NewEnvelope("", SourceAPI, at, samples()[1]); err == nil {
		t.Error("empty id: no error")
	}
}

// mutation is a body derived from a valid one, which Decode must reject with want. The schema
// test checks that the schema rejects every one of them too.
type mutation struct {
	name string
	body string
	want error
}

func mutations(t *testing.T) []mutation {
	t.Helper()
	created := string(encode(t, samples()[0]))
	expired := string(encode(t, samples()[2]))
	replace := func(s, old, new string) string {
		t.Helper()
		if !strings.Contains(s, old) {
			t.Fatalf("%q not in %s", old, s)
		}
		return strings.Replace(s, old, new, 1)
	}
	return []mutation{
		{"not json", `{"specversion":`, ErrMalformed},
		{"array", `[]`, ErrMalformed},
		{"unknown type", replace(created, "orderflow.order.created.v1", "orderflow.order.unknown.v1"), ErrUnknownType},
		{"other version", replace(created, "orderflow.order.created.v1", "orderflow.order.created.v2"), ErrUnknownType},
		{"spec version", replace(created, `"specversion":"1.0"`, `"specversion":"0.3"`), ErrMalformed},
		{"no id", replace(created, `"id":"0b4d9a4c-6f0e-4d5e-9a51-6c1f1d1c2a10",`, ``), ErrMalformed},
		{"empty source", replace(created, `"source":"orderflow/api"`, `"source":""`), ErrMalformed},
		{"null time", replace(created, `"time":"2026-12-01T10:30:00.123456Z"`, `"time":null`), ErrMalformed},
		{"bad time", replace(created, `"time":"2026-12-01T10:30:00.123456Z"`, `"time":"yesterday"`), ErrMalformed},
		{"data content type", replace(created, `"datacontenttype":"application/json"`, `"datacontenttype":"text/plain"`), ErrMalformed},
		{"no data", replace(created, `"data":`, `"extension":`), ErrMalformed},
		{"missing order id", replace(created, `"orderId":7,`, ``), ErrMalformed},
		{"null user id", replace(created, `"userId":3`, `"userId":null`), ErrMalformed},
		{"string order id", replace(created, `"orderId":7`, `"orderId":"7"`), ErrMalformed},
		{"zero order id", replace(created, `"orderId":7`, `"orderId":0`), ErrMalformed},
		{"unknown data field", replace(created, `"orderId":7`, `"orderId":7,"coupon":"X"`), ErrMalformed},
		{"quoted money", replace(created, `"total":209.97`, `"total":"209.97"`), ErrMalformed},
		{"three decimals", replace(created, `"total":209.97`, `"total":209.975`), ErrMalformed},
		{"negative money", replace(created, `"total":209.97`, `"total":-1.00`), ErrMalformed},
		{"empty items", replace(created, `"items":[{"productId":1,"quantity":2,"price":99.99},{"productId":2,"quantity":1,"price":9.99}]`, `"items":[]`), ErrMalformed},
		{"item without price", replace(created, `,"price":9.99`, ``), ErrMalformed},
		{"unknown item field", replace(created, `"quantity":1,`, `"quantity":1,"sku":"A",`), ErrMalformed},
		{"zero quantity", replace(created, `"quantity":1,`, `"quantity":0,`), ErrMalformed},
		{"data of another type", replace(expired, "orderflow.order.expired.v1", "orderflow.order.completed.v1"), ErrMalformed},
		{"bad duration", replace(expired, `"expiredAfter":"10m0s"`, `"expiredAfter":"10 minutes"`), ErrMalformed},
		{"zero duration", replace(expired, `"expiredAfter":"10m0s"`, `"expiredAfter":"0s"`), ErrMalformed},
	}
}

func TestDecodeIsStrict(t *testing.T) {
	t.Parallel()
	for _, m := range mutations(t) {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			_, e, err := Decode([]byte(m.body))
			if !errors.Is(err, m.want) {
				t.Fatalf("got %v (%#v), want %v", err, e, m.want)
			}
		})
	}
}

func TestDecodeAllowsExtensionAttributes(t *testing.T) {
	t.Parallel()
	body := strings.Replace(string(encode(t, samples()[1])), `{`, `{"traceparent":"00-abc-def-01",`, 1)
	if _, _, err := Decode([]byte(body)); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeKeepsMoneyExact(t *testing.T) {
	t.Parallel()
	_, e, err := Decode(encode(t, samples()[2]))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.(OrderExpired).Total; !got.Equal(decimal.RequireFromString("0.3")) {
		t.Errorf("total %s", got)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(encode(t, samples()[1]), &raw)
	if !strings.Contains(string(raw["data"]), `"total":10.00`) {
		t.Errorf("data %s does not write 10.00", raw["data"])
	}
}
