package httpserver_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"orderflow/platform/httpserver"
	"orderflow/platform/metrics"
)

// held serves GET /hold?id=..., whose handler sends its id on entered and answers once the
// test sends on release, and GET /healthz.
type held struct {
	entered chan string
	release chan struct{}
	reg     *prometheus.Registry
	url     string
}

// serveHeld serves a mux behind Limit(n), and behind Observe and WithTimeout(timeout) as
// the process serves it.
func serveHeld(t *testing.T, n int, timeout time.Duration) *held {
	t.Helper()
	h := &held{entered: make(chan string, 16), release: make(chan struct{}), reg: prometheus.NewRegistry()}
	m := metrics.NewHTTP(h.reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hold", func(w http.ResponseWriter, r *http.Request) {
		h.entered <- r.URL.Query().Get("id")
		<-h.release
	})
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	srv := httptest.NewServer(httpserver.WithTimeout(
		httpserver.Observe(slog.New(slog.DiscardHandler), m, httpserver.Limit(mux, n, m)), timeout))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(h.release) }) // before Close, which waits for the handlers
	h.url = srv.URL
	return h
}

// get sends GET path in the background and returns its answer's status, body and
// Retry-After on the channel, or "error" and the error when none came within 5 s.
func (h *held) get(path string) <-chan [3]string {
	done := make(chan [3]string, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(h.url + path)
		if err != nil {
			done <- [3]string{"error", err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- [3]string{resp.Status, string(b), resp.Header.Get("Retry-After")}
	}()
	return done
}

// metrics is the registry's exposition.
func (h *held) metrics() string {
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// waitFor waits until the exposition contains line.
func (h *held) waitFor(t *testing.T, line string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(h.metrics(), line); {
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q:\n%s", line, h.metrics())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *held) mustEnter(t *testing.T, want string) {
	t.Helper()
	select {
	case id := <-h.entered:
		if id != want {
			t.Fatalf("request %s entered the handler, want %s", id, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("request %s never entered the handler", want)
	}
}

func TestLimitServesWaitingRequestsInTheOrderTheyCame(t *testing.T) {
	h := serveHeld(t, 1, time.Minute)
	first := h.get("/hold?id=1")
	h.mustEnter(t, "1")
	second := h.get("/hold?id=2")
	h.waitFor(t, "orderflow_http_requests_waiting 1")
	third := h.get("/hold?id=3")
	h.waitFor(t, "orderflow_http_requests_waiting 2")

	select {
	case id := <-h.entered:
		t.Fatalf("request %s entered the handler while another held the only place", id)
	case <-time.After(100 * time.Millisecond):
	}
	// A probe does not wait behind them.
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(h.url + "/healthz")
	if err != nil {
		t.Fatalf("/healthz with every place taken: %v, want 200 at once", err)
	}
	resp.Body.Close()

	h.release <- struct{}{}
	h.mustEnter(t, "2")
	h.release <- struct{}{}
	h.mustEnter(t, "3")
	h.release <- struct{}{}
	for _, answer := range []<-chan [3]string{first, second, third} {
		if got := <-answer; got[0] != "200 OK" {
			t.Errorf("answer %v, want 200", got)
		}
	}
	h.waitFor(t, "orderflow_http_requests_waiting 0")
}

func TestLimitAnswers503WhenTheRequestsTimeEndsWhileItWaits(t *testing.T) {
	h := serveHeld(t, 1, 300*time.Millisecond)
	first := h.get("/hold?id=1")
	h.mustEnter(t, "1")

	begin := time.Now()
	got := <-h.get("/hold?id=2")
	if got[0] != "503 Service Unavailable" || got[2] != "1" ||
		!strings.Contains(got[1], `"status":503`) || !strings.Contains(got[1], "http.maxRequestsInFlight") {
		t.Errorf("a request that waited out its time = %q, want 503 with Retry-After 1 and a problem naming the setting", got)
	}
	if elapsed := time.Since(begin); elapsed < 250*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("answered after %v, want after its time limit of 300ms", elapsed)
	}
	select {
	case id := <-h.entered:
		t.Errorf("request %s entered the handler after its answer", id)
	default:
	}
	h.release <- struct{}{}
	<-first
	for _, want := range []string{
		`orderflow_http_requests_total{code="503",method="GET",route="GET /hold"} 1`,
		"orderflow_http_requests_waiting 0",
	} {
		h.waitFor(t, want)
	}

	// The place the first request held is free again.
	second := h.get("/hold?id=3")
	h.mustEnter(t, "3")
	h.release <- struct{}{}
	if got := <-second; got[0] != "200 OK" {
		t.Errorf("the next request = %v, want 200", got)
	}
}

func TestLimitFreesThePlaceOfAPanickingHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewHTTP(reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	srv := httptest.NewServer(httpserver.WithTimeout(
		httpserver.Observe(slog.New(slog.DiscardHandler), m, httpserver.Limit(mux, 1, m)), 300*time.Millisecond))
	defer srv.Close()
	for i := range 3 {
		if status, body := get(t, srv.URL+"/panic"); status != http.StatusInternalServerError {
			t.Fatalf("request %d = %d %s, want 500: its place was not freed", i, status, body)
		}
	}
}
