package httpserver_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"orderflow/configuration"
	"orderflow/platform/health"
	"orderflow/platform/httpserver"
	"orderflow/platform/log"
	"orderflow/platform/metrics"
	"orderflow/platform/tracing"
)

// GET /outlive's handler signals outliveStarted, waits for the test to send on
// clientGone, then watches its context for 100 ms and sends how it ended on outcomes, and
// whether httpserver.ClientGone told within 5 s that its client had left on seenGone.
var (
	outliveStarted = make(chan struct{})
	clientGone     = make(chan struct{})
	outcomes       = make(chan error, 1)
	seenGone       = make(chan bool, 1)
)

func start(t *testing.T, cfg *configuration.Config, checks ...health.Check) *httpserver.Server {
	t.Helper()
	var srv *httpserver.Server
	app := fxtest.New(t,
		fx.Supply(cfg, slog.New(slog.DiscardHandler)),
		metrics.Module,
		httpserver.Module,
		fx.Invoke(func(mux *http.ServeMux) {
			health.Register(mux, checks)
			mux.HandleFunc("GET /outlive", func(w http.ResponseWriter, r *http.Request) {
				outliveStarted <- struct{}{}
				<-clientGone
				select {
				case <-r.Context().Done():
				case <-time.After(100 * time.Millisecond):
				}
				outcomes <- r.Context().Err()
				select {
				case <-httpserver.ClientGone(r.Context()):
					seenGone <- true
				case <-time.After(5 * time.Second):
					seenGone <- false
				}
			})
			mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
					w.WriteHeader(http.StatusServiceUnavailable)
				case <-time.After(5 * time.Second):
				}
			})
		}),
		fx.Populate(&srv),
	)
	app.RequireStart()
	t.Cleanup(app.RequireStop)
	return srv
}

func testConfig() *configuration.Config {
	cfg := configuration.Defaults()
	cfg.HTTP.Address = "127.0.0.1:0"
	cfg.HTTP.RequestTimeout = configuration.Duration(200 * time.Millisecond)
	return &cfg
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	up := health.Check{Name: "database", Check: func(context.Context) error { return nil }}
	down := health.Check{Name: "broker", Check: func(context.Context) error { return errors.New("connection refused") }}

	srv := start(t, testConfig(), up)
	if code, _ := get(t, srv.URL()+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get(t, srv.URL()+"/readyz"); code != http.StatusOK || !strings.Contains(body, `"database":"ok"`) {
		t.Errorf("/readyz = %d %s", code, body)
	}

	srv = start(t, testConfig(), up, down)
	code, body := get(t, srv.URL()+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "broker") || !strings.Contains(body, "connection refused") {
		t.Errorf("/readyz with a broker down = %d %s", code, body)
	}

	// An optional dependency's failure is reported, and the process stays ready.
	optional := health.Check{Name: "broker", Check: func(context.Context) error { return health.Optional(errors.New("connection refused")) }}
	srv = start(t, testConfig(), up, optional)
	code, body = get(t, srv.URL()+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"broker":"unavailable: connection refused"`) {
		t.Errorf("/readyz with an optional broker down = %d %s", code, body)
	}
}

func TestRequestTimeout(t *testing.T) {
	srv := start(t, testConfig())
	begin := time.Now()
	code, _ := get(t, srv.URL()+"/slow")
	if code != http.StatusServiceUnavailable {
		t.Errorf("slow request = %d, want the handler to see its deadline", code)
	}
	if elapsed := time.Since(begin); elapsed > 3*time.Second {
		t.Errorf("slow request took %v despite a 200ms timeout", elapsed)
	}
}

func TestDepartedClientDoesNotCancelTheRequest(t *testing.T) {
	// This test is about the client going away, not the request timeout: a long
	// timeout keeps a slow machine's goroutine hops from reaching the deadline.
	cfg := testConfig()
	cfg.HTTP.RequestTimeout = configuration.Duration(30 * time.Second)
	srv := start(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/outlive", nil)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case <-outliveStarted:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not start")
	}
	// The client gives up and closes its connection while the handler runs.
	cancel()
	if err := <-answered; err == nil {
		t.Fatal("the client got an answer before it gave up")
	}
	clientGone <- struct{}{}
	select {
	case err := <-outcomes:
		if err != nil {
			t.Errorf("the request's context ended (%v) when its client went away", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not finish")
	}
	if !<-seenGone {
		t.Error("ClientGone did not tell that the client had gone away")
	}
}

func TestMetricsCountRequests(t *testing.T) {
	srv := start(t, testConfig())
	get(t, srv.URL()+"/healthz")
	get(t, srv.URL()+"/no/such/path")
	// Methods a client makes up are counted together, so that they cannot grow the label set.
	for _, method := range []string{"BREW", "WHEN", "PROPFIND"} {
		req, err := http.NewRequest(method, srv.URL()+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	_, body := get(t, srv.URL()+"/metrics")
	if strings.Contains(body, `method="BREW"`) {
		t.Errorf("/metrics has a series for the made-up method BREW")
	}
	for _, want := range []string{
		`orderflow_http_requests_total{code="200",method="GET",route="GET /healthz"} 1`,
		`orderflow_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`orderflow_http_requests_total{code="405",method="other",route="unmatched"} 3`,
		`orderflow_http_request_duration_seconds_bucket{method="GET",route="GET /healthz"`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestAddressInUseFailsStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig()
	cfg.HTTP.Address = ln.Addr().String()
	app := fx.New(fx.NopLogger,
		fx.Supply(cfg, slog.New(slog.DiscardHandler)),
		metrics.Module, httpserver.Module)
	err = app.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http.address") {
		t.Fatalf("start on a used port: err = %v, want one naming http.address", err)
	}
}

func TestRequestID(t *testing.T) {
	srv := start(t, testConfig())
	req, _ := http.NewRequest(http.MethodGet, srv.URL()+"/healthz", nil)
	req.Header.Set(httpserver.RequestIDHeader, "order-trail-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(httpserver.RequestIDHeader); got != "order-trail-42" {
		t.Errorf("caller's request id came back as %q", got)
	}

	req.Header.Set(httpserver.RequestIDHeader, "bad id with spaces")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(httpserver.RequestIDHeader); len(got) != 24 {
		t.Errorf("unusable request id replaced by %q, want a generated one", got)
	}
}

func TestAccessLogCarriesRequestID(t *testing.T) {
	var buf bytes.Buffer
	l, err := log.New(&buf, configuration.Log{Level: "info", Format: "json"}, "api")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.NewHTTP(prometheus.NewRegistry())
	h := httpserver.WithRequestID(httpserver.Observe(l, m, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})))
	req := httptest.NewRequest(http.MethodGet, "/api/x", nil)
	req.Header.Set(httpserver.RequestIDHeader, "trail-7")
	h.ServeHTTP(httptest.NewRecorder(), req)
	line := buf.String()
	for _, want := range []string{`"request_id":"trail-7"`, `"status":418`, `"path":"/api/x"`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log %s lacks %s", line, want)
		}
	}
}

func TestPprofOnlyOnItsOwnAddress(t *testing.T) {
	off := start(t, testConfig())
	if code, _ := get(t, off.URL()+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("profiles without http.pprofAddress: status %d, want 404", code)
	}

	// A free port, released for the server to take.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := testConfig()
	cfg.HTTP.PprofAddress = addr
	on := start(t, cfg)
	if code, body := get(t, "http://"+addr+"/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile on http.pprofAddress: status %d, body %.80q", code, body)
	}
	if code, _ := get(t, on.URL()+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("profiles on http.address: status %d, want 404", code)
	}

	// A pprof address in use fails start-up, naming the key.
	cfg = testConfig()
	cfg.HTTP.PprofAddress = addr
	app := fx.New(fx.NopLogger,
		fx.Supply(cfg, slog.New(slog.DiscardHandler)),
		metrics.Module, httpserver.Module)
	err = app.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http.pprofAddress") {
		t.Fatalf("start with a used pprof port: err = %v, want one naming http.pprofAddress", err)
	}
}

func TestPanickingHandlerIsAnswered(t *testing.T) {
	var buf bytes.Buffer
	l, err := log.New(&buf, configuration.Log{Level: "info", Format: "json"}, "api")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := metrics.NewHTTP(reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /before", func(http.ResponseWriter, *http.Request) { panic("no answer yet") })
	mux.HandleFunc("GET /after", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "the first part")
		_ = http.NewResponseController(w).Flush()
		panic("answer begun")
	})
	srv := httptest.NewServer(httpserver.Observe(l, m, mux))
	defer srv.Close()

	status, body := get(t, srv.URL+"/before")
	if status != http.StatusInternalServerError || !strings.Contains(body, `"detail":"An unexpected error occurred."`) {
		t.Errorf("a handler that panicked before answering: %d %s, want 500 and a problem", status, body)
	}
	for _, want := range []string{`"msg":"http handler panicked"`, `"panic":"no answer yet"`, `"stack":"goroutine `, `"msg":"http request"`, `"status":500`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, buf.String())
		}
	}

	resp, err := http.Get(srv.URL + "/after")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Error("a handler that panicked after its answer began: the client read a whole answer, want the connection dropped")
	}

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`orderflow_http_requests_total{code="500",method="GET",route="GET /before"} 1`,
		`orderflow_http_requests_total{code="500",method="GET",route="GET /after"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestSpansAreNamedByRoute checks that a request's span is named by its route, as its
// metrics are, and not by its path, whose ids would give every order a name of its own in
// a trace backend.
func TestSpansAreNamedByRoute(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/orders/{id}", func(http.ResponseWriter, *http.Request) {})
	h := tracing.Middleware(httpserver.Observe(slog.New(slog.DiscardHandler), metrics.NewHTTP(prometheus.NewRegistry()), mux))
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/api/orders/123"}, {http.MethodGet, "/api/orders/456"},
		{http.MethodGet, "/no/such/path/789"}, {"BREW", "/api/orders/123"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
	}
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	want := []string{"GET /api/orders/{id}", "GET /api/orders/{id}", "GET", "HTTP"}
	if !slices.Equal(names, want) {
		t.Errorf("span names %q, want %q", names, want)
	}
}
