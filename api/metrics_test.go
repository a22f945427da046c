package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"orderflow/domain"
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
		{domain.ErrEmptyOrder, "rejected"},
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
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() != "orderflow_http_requests_total" {
			continue
		}
		for _, l := range f.GetMetric()[0].GetLabel() {
			if l.GetName() == "route" && l.GetValue() != "getProduct" {
				t.Errorf("route label %q, want the operation id getProduct", l.GetValue())
			}
		}
	}
}
