package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"orderflow/platform/tracing"
)

func TestTraceCarriedFromRequestToEventHeaders(t *testing.T) {
	app := fxtest.New(t, fx.Supply(tracing.ServiceName("orderflow-test")), tracing.Module)
	app.RequireStart()
	defer app.RequireStop()

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	headers := map[string]string{}
	h := tracing.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tracing.Inject(r.Context(), headers)
	}))
	req := httptest.NewRequest(http.MethodPost, "/api/orders", nil)
	req.Header.Set("traceparent", parent)
	h.ServeHTTP(httptest.NewRecorder(), req)

	ctx := tracing.Extract(context.Background(), headers)
	sc := trace.SpanContextFromContext(ctx)
	if got := sc.TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("event carries trace %s, want the caller's; headers %v", got, headers)
	}
	if sc.SpanID().String() == "00f067aa0ba902b7" {
		t.Error("event carries the caller's span, not the request's own")
	}
}

func TestNewTraceWithoutCaller(t *testing.T) {
	app := fxtest.New(t, fx.Supply(tracing.ServiceName("orderflow-test")), tracing.Module)
	app.RequireStart()
	defer app.RequireStop()
	headers := map[string]string{}
	tracing.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tracing.Inject(r.Context(), headers)
	})).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if headers["traceparent"] == "" {
		t.Error("a request without a caller's trace starts none")
	}
}
