package httpserver

import (
	"io"
	"net/http"

	"orderflow/platform/metrics"
)

// Limit lets mux work on at most n requests at once. The others wait, in the order they
// came, before any of their work: a waiting request holds its connection and little else,
// where one being served also holds its body, its decoded order and its place in the
// intake. A request whose context ends while it waits is answered 503 with Retry-After.
// Probes and /metrics never wait, so that a busy process is not taken for a dead one.
func Limit(mux *http.ServeMux, n int, m *metrics.HTTP) http.Handler {
	places := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if probe(r.URL.Path) {
			mux.ServeHTTP(w, r)
			return
		}
		select {
		case places <- struct{}{}:
		default:
			if !wait(places, r, m) {
				// Counted under the route it asked for, which the mux has not matched.
				_, pattern := mux.Handler(r)
				metrics.SetRoute(r.Context(), pattern)
				w.Header().Set("Content-Type", "application/problem+json")
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, busyProblem)
				return
			}
		}
		defer func() { <-places }()
		mux.ServeHTTP(w, r)
	})
}

// wait waits for a place until r's context ends, and reports whether it got one. Blocked
// sends on a channel are served first come, first served.
func wait(places chan struct{}, r *http.Request, m *metrics.HTTP) bool {
	m.Waiting(1)
	defer m.Waiting(-1)
	select {
	case places <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	}
}

// busyProblem answers a request that found no place before its time limit.
const busyProblem = `{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"The server had more requests at once than http.maxRequestsInFlight until this request's time limit; retry later."}`

// probe reports whether path is one of the endpoints that orchestrators and scrapers poll.
func probe(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}
