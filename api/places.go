package api

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// requestsWaiting is the number of operations waiting for a place (places).
var requestsWaiting = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "orderflow_http_requests_waiting",
	Help: "API requests waiting for one of the http.maxRequestsInFlight places.",
})

// places bounds the operations the API works on at once (http.maxRequestsInFlight). A
// request takes a place once its body has arrived, so that a client that sends it slowly
// holds none, and keeps it until answered. The others wait, first come first served: a
// waiting request holds its connection and its body, where one being worked on also holds
// its decoded input, its statements and its place in the intake.
type places struct {
	free    chan struct{}
	maxWait time.Duration
}

// newPlaces returns n places, for which a request waits at most maxWait.
func newPlaces(n int, maxWait time.Duration) *places {
	return &places{free: make(chan struct{}, n), maxWait: maxWait}
}

// take waits for a place until ctx ends or maxWait has passed, and reports whether it got
// one, which the caller must release. A request that waited half its time limit would have
// too little of it left for its statements.
func (p *places) take(ctx context.Context) bool {
	select {
	case p.free <- struct{}{}:
		return true
	default:
	}
	requestsWaiting.Inc()
	defer requestsWaiting.Dec()
	timer := time.NewTimer(p.maxWait)
	defer timer.Stop()
	// Blocked sends on a channel are served in the order they came.
	select {
	case p.free <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-timer.C:
	}
	return false
}

// release frees a place taken by take.
func (p *places) release() { <-p.free }
