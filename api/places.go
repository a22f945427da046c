package api

import (
	"context"
	"time"

	"orderflow/platform/httpserver"
)

// places bounds the operations the API works on at once (http.maxRequestsInFlight). A
// request takes a place once its body has arrived, so that a client that sends it slowly
// holds none, and keeps it until answered. The others wait, first come first served: a
// waiting request holds its connection and its body, where one being worked on also holds
// its decoded input, its statements and its place in the intake.
type places struct {
	free chan struct{}
	// keep is the time a request must have left to wait for a place: half of
	// http.requestTimeout, so that the one that gets it has time for its statements.
	keep time.Duration
}

// newPlaces returns n places, for which a request waits while it has more than keep of
// its time left.
func newPlaces(n int, keep time.Duration) *places {
	return &places{free: make(chan struct{}, n), keep: keep}
}

// take waits for a place, and reports whether it got one, which the caller must release.
// It gives up once the request of ctx has no more than keep of its time left (or, without
// a deadline, after keep), or its client has gone (httpserver.ClientGone): nothing has been
// done for it then.
func (p *places) take(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case p.free <- struct{}{}:
		return true
	default:
	}
	wait := p.keep
	if deadline, ok := ctx.Deadline(); ok {
		wait = time.Until(deadline) - p.keep
	}
	if wait <= 0 {
		return false
	}
	requestsWaiting.Inc()
	defer requestsWaiting.Dec()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	// Blocked sends on a channel are served in the order they came.
	select {
	case p.free <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-httpserver.ClientGone(ctx):
	case <-timer.C:
	}
	return false
}

// release frees a place taken by take.
func (p *places) release() { <-p.free }
