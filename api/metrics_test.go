package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"orderflow/api/oas"
	"orderflow/platform/httpserver"
	"orderflow/platform/metrics"
)

func TestOrderOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "created"},
		{fmt.Errorf("reserve: %w", ErrInsufficientStock), "insufficient_stock"},
		{ErrIdempotencyKeyReused, "idempotency_conflict"},
		{ErrIdempotencyKeyOrderDeleted, "idempotency_conflict"},
		{context.DeadlineExceeded, "unavailable"},
		{fmt.Errorf("insert order: %w", io.ErrUnexpectedEOF), "unavailable"},
		{problem(http.StatusForbidden, "no"), "rejected"},
		{createOrderChecks(&oas.OrderCreate{}).err(), "rejected"}, // an order without items
		{errors.New("boom"), "error"},
	} {
		if got := orderOutcome(tc.err); got != tc.want {
			t.Errorf("orderOutcome(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

// TestRequestsAreLabelledByOperation checks that HTTP metrics name the API operation
// rather than the /api/ prefix the mux routes on.
func TestRequestsAreLabelledByOperation(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	m := metrics.NewHTTP(reg)
	srv, err := NewServer(e.h, e.cfg.HTTP.MaxBodyBytes)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpserver.Observe(slog.New(slog.DiscardHandler), m, srv))
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/products/12")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, err := testutil.GatherAndCount(reg, "orderflow_http_requests_total")
	if err != nil || n != 1 {
		t.Fatalf("%d series, %v", n, err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	route := "(none)"
	for _, f := range families {
		if f.GetName() != "orderflow_http_requests_total" {
			continue
		}
		for _, l := range f.GetMetric()[0].GetLabel() {
			if l.GetName() == "route" {
				route = l.GetValue()
			}
		}
	}
	if route != "getProduct" {
		t.Errorf("route label %q, want the operation id getProduct", route)
	}
}

// TestOrderRequestsRefusedBeforeTheHandlerAreCounted checks that every POST /api/orders
// counts once in orderflow_orders_created_total, including those refused before the
// operation runs (a body that does not decode, no token, a body too large), which are
// rejected order requests too.
func TestOrderRequestsRefusedBeforeTheHandlerAreCounted(t *testing.T) {
	e := newEnv(t)
	tok := e.adminToken()
	product := e.product("1.00", 10)
	rejected, created := ordersCreated.WithLabelValues("rejected"), ordersCreated.WithLabelValues("created")
	rejectedBefore, createdBefore := testutil.ToFloat64(rejected), testutil.ToFloat64(created)
	for _, tc := range []struct {
		name, path, tok, contentType, body string
		status                             int
	}{
		{"not JSON", "/api/orders", tok, "application/json", `{"items": [`, http.StatusBadRequest},
		{"no token", "/api/orders", "", "application/json", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1}]}`, product), http.StatusUnauthorized},
		{"too large", "/api/orders", tok, "application/json", `{"items":[` + strings.Repeat(" ", int(e.cfg.HTTP.MaxBodyBytes)) + `]}`, http.StatusRequestEntityTooLarge},
		{"unknown parameter", "/api/orders?dryRun=1", tok, "application/json", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1}]}`, product), http.StatusBadRequest},
		{"not JSON media type", "/api/orders", tok, "text/plain", `x`, http.StatusUnsupportedMediaType},
	} {
		if res := e.do(http.MethodPost, tc.path, tc.tok, tc.contentType, tc.body); res.StatusCode != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.name, res.StatusCode, tc.status)
		}
	}
	if res := e.do(http.MethodPost, "/api/orders", tok, "application/json", fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1}]}`, product)); res.StatusCode != http.StatusCreated {
		t.Fatalf("valid order: status %d", res.StatusCode)
	}
	if got := testutil.ToFloat64(rejected) - rejectedBefore; got != 5 {
		t.Errorf("orderflow_orders_created_total{outcome=\"rejected\"} grew by %v for 5 refused order requests, want 5", got)
	}
	if got := testutil.ToFloat64(created) - createdBefore; got != 1 {
		t.Errorf("orderflow_orders_created_total{outcome=\"created\"} grew by %v for 1 order, want 1", got)
	}
}

// TestUnknownAPIPathsAreUnmatched checks that a request under /api/ that names no
// operation (an unknown path, or a method the path does not take) is counted with the
// route "unmatched", as one outside /api/ is, and not with the mux's /api/ prefix.
func TestUnknownAPIPathsAreUnmatched(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	m := metrics.NewHTTP(reg)
	mux := http.NewServeMux()
	if err := Register(mux, e.h, e.cfg); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpserver.Observe(slog.New(slog.DiscardHandler), m, mux))
	defer ts.Close()
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/api/no/such/path/12"},
		{http.MethodPatch, "/api/orders/12"},
	} {
		r, err := http.NewRequest(req.method, ts.URL+req.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := `
# HELP orderflow_http_requests_total HTTP requests by route, method and status code.
# TYPE orderflow_http_requests_total counter
orderflow_http_requests_total{code="404",method="GET",route="unmatched"} 1
orderflow_http_requests_total{code="405",method="PATCH",route="unmatched"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "orderflow_http_requests_total"); err != nil {
		t.Error(err)
	}
}
