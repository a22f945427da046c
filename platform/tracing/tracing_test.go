package tracing_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"orderflow/internal/testutil"
	"orderflow/platform/tracing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestTraceCarriedFromRequestToEventHeaders(t *testing.T) {
	app := fxtest.New(t, fx.Supply(tracing.ServiceName("orderflow-test"), quiet), tracing.Module)
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
	app := fxtest.New(t, fx.Supply(tracing.ServiceName("orderflow-test"), quiet), tracing.Module)
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

// TestExportFailuresAreLoggedAsJSON: with a collector that does not answer, the failed
// exports are reported through the process's logger, as JSON lines carrying its attributes,
// and not as plain text lines in the middle of the JSON log.
func TestExportFailuresAreLoggedAsJSON(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // milliseconds between two exports
	var plain, logged testutil.Buffer
	log.SetOutput(&plain)
	defer log.SetOutput(os.Stderr)
	logger := slog.New(slog.NewJSONHandler(&logged, nil)).With("process", "test")

	app := fxtest.New(t, fx.Supply(tracing.ServiceName("orderflow-test"), logger), tracing.Module)
	app.RequireStart()
	defer app.RequireStop()
	_, span := tracing.Tracer().Start(context.Background(), "work")
	span.End()
	for deadline := time.Now().Add(10 * time.Second); plain.String() == "" && logged.String() == ""; {
		if time.Now().After(deadline) {
			t.Fatal("no export failure reported within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if plain.String() != "" {
		t.Errorf("plain text on stderr: %q", plain.String())
	}
	var line struct {
		Level, Process string
		Err            string `json:"error"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(logged.String(), "\n", 2)[0]), &line); err != nil {
		t.Fatalf("log %q: %v", logged.String(), err)
	}
	if line.Level != "WARN" || line.Process != "test" || !strings.Contains(line.Err, "127.0.0.1:1") {
		t.Errorf("log line %+v, want a warning of the process naming the collector", line)
	}
}
