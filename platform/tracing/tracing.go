// Package tracing sets up OpenTelemetry tracing: W3C trace context is carried through HTTP
// requests and event headers, and spans are exported over OTLP only when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) variable is set.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
)

// Module installs the process's tracer provider and the W3C propagator, and flushes
// exported spans on stop.
var Module = fx.Module("tracing",
	fx.Provide(NewProvider),
	fx.Invoke(func(trace.TracerProvider) {}),
)

// Propagator carries trace context as the W3C traceparent and tracestate headers.
var Propagator = propagation.TraceContext{}

// ServiceName names the process in exported spans: "orderflow-api", ...
type ServiceName string

// NewProvider returns the tracer provider and installs it globally. Without an OTLP
// endpoint in the environment nothing is exported, but trace ids are still created and
// propagated, so logs and events of one request can be correlated. OpenTelemetry's own
// errors, such as exports that fail, are logged through l: by default OpenTelemetry writes
// them as plain text lines into the process's JSON log.
func NewProvider(lc fx.Lifecycle, name ServiceName, l *slog.Logger) (trace.TracerProvider, error) {
	l = l.With("component", "tracing")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		l.Warn("opentelemetry", "error", err)
	}))
	otel.SetLogger(logr.FromSlogHandler(l.Handler()))
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if os.Getenv("OTEL_SERVICE_NAME") == "" {
		opts = append(opts, sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", string(name)))))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	lc.Append(fx.StopHook(tp.Shutdown))
	return tp, nil
}

// Inject writes the trace context of ctx into headers (for an outbox row or a message).
func Inject(ctx context.Context, headers map[string]string) {
	Propagator.Inject(ctx, propagation.MapCarrier(headers))
}

// Extract returns ctx carrying the trace context found in headers.
func Extract(ctx context.Context, headers map[string]string) context.Context {
	return Propagator.Extract(ctx, propagation.MapCarrier(headers))
}

// Tracer is orderflow's tracer from the global provider.
func Tracer() trace.Tracer { return otel.Tracer("orderflow") }

// Middleware starts a server span for each request, continuing the caller's trace when
// the request carries a traceparent header. The span is named by the path until
// httpserver.Observe, inside it, names it by the request's route.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := Tracer().Start(ctx, r.Method+" "+r.URL.Path,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
