// Package metrics holds the process's Prometheus registry, serves it on /metrics, and
// instruments the HTTP server.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"
)

// Module provides the registry (as *prometheus.Registry and prometheus.Registerer) and
// serves it on GET /metrics.
var Module = fx.Module("metrics",
	fx.Provide(
		NewRegistry,
		func(r *prometheus.Registry) prometheus.Registerer { return r },
		NewHTTP,
	),
	fx.Invoke(func(mux *http.ServeMux, r *prometheus.Registry) {
		mux.Handle("GET /metrics", promhttp.HandlerFor(r, promhttp.HandlerOpts{Registry: r}))
	}),
)

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Register registers every collector with reg, stopping at the first failure (a name
// registered twice is a wiring mistake worth failing start-up for).
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// HTTP counts and times the requests of the process's HTTP server.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTP registers the HTTP metrics with reg.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	h := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderflow_http_request_duration_seconds",
			Help:    "HTTP request latency by route and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(h.requests, h.duration)
	return h
}

// Unmatched is the route label of a request that no route serves (an unknown path, or a
// method its path does not take).
const Unmatched = "unmatched"

type routeKey struct{}

// SetRoute names the route of the request being served, for handlers that route by
// themselves behind one mux pattern (the API's generated router names its operations).
func SetRoute(ctx context.Context, route string) {
	if p, ok := ctx.Value(routeKey{}).(*string); ok {
		*p = route
	}
}

// Track prepares r to be counted: the returned request carries the route holder that
// SetRoute fills, and done records the request once it has been answered with code, and
// returns its route label. The route label is the one set with SetRoute, else the mux
// pattern that matched the returned request, else "unmatched", so unknown paths cannot grow
// the label set.
func (h *HTTP) Track(r *http.Request) (tracked *http.Request, done func(code int) (route string)) {
	start := time.Now()
	route := new(string)
	tracked = r.WithContext(context.WithValue(r.Context(), routeKey{}, route))
	return tracked, func(code int) string {
		name := *route
		if name == "" {
			name = tracked.Pattern
		}
		if name == "" {
			name = Unmatched
		}
		method := MethodLabel(tracked.Method)
		h.requests.WithLabelValues(name, method, strconv.Itoa(code)).Inc()
		h.duration.WithLabelValues(name, method).Observe(time.Since(start).Seconds())
		return name
	}
}

// MethodLabel is method's label: the method itself for those net/http names, else "other",
// so that the methods a client makes up cannot grow the label set either.
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}
