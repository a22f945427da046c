package api

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"orderflow/platform/db"
	"orderflow/platform/metrics"
)

// ordersCreated counts POST /api/orders by outcome: created (including idempotent
// replays), insufficient_stock, rejected (invalid or forbidden, including the requests
// refused before the operation runs: no valid token, a body that does not decode or is too
// large), idempotency_conflict, unavailable (database down, request timed out, or no place
// in time) and error.
var ordersCreated = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "orderflow_orders_created_total",
	Help: "Order requests by outcome.",
}, []string{"outcome"})

// intakeGroupOrders is the number of orders in each transaction that stored new orders.
var intakeGroupOrders = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "orderflow_order_intake_group_orders",
	Help:    "Orders stored per transaction by the order intake.",
	Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
})

// requestsWaiting is the number of operations waiting for a place (places).
var requestsWaiting = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "orderflow_http_requests_waiting",
	Help: "API requests waiting for one of the http.maxRequestsInFlight places.",
})

// countOrderRefused counts the order request of info as rejected unless the operation ran
// (and counted it itself): it was refused before, for its token, its body or its
// parameters. Each POST /api/orders thus counts once.
func countOrderRefused(info *requestInfo) {
	if !info.orderCounted {
		ordersCreated.WithLabelValues("rejected").Inc()
	}
}

// orderOperationRuns marks the order request of ctx as counted by the operation.
func orderOperationRuns(ctx context.Context) { requestInfoFrom(ctx).orderCounted = true }

// Collectors are the API's own metrics, for a process registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{ordersCreated, intakeGroupOrders, requestsWaiting}
}

func registerMetrics(reg prometheus.Registerer) error {
	return metrics.Register(reg, Collectors()...)
}

func orderOutcome(err error) string {
	var p *Problem
	switch {
	case err == nil:
		return "created"
	case errors.Is(err, ErrInsufficientStock):
		return "insufficient_stock"
	case errors.Is(err, ErrIdempotencyKeyReused), errors.Is(err, ErrIdempotencyKeyOrderDeleted):
		return "idempotency_conflict"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), db.Unavailable(err):
		return "unavailable"
	case errors.As(err, &p):
		return "rejected"
	}
	return "error"
}
