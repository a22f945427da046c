package worker

import (
	"github.com/prometheus/client_golang/prometheus"

	"orderflow/platform/metrics"
)

// The worker's metrics, registered on the process's registry by Module. Values are process
// wide: the sum over every Worker of the process.
var (
	paymentsInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orderflow_worker_payments_in_flight",
		Help: "Simulated payments running now.",
	})
	payments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_worker_payments_total",
		Help: "Simulated payments by outcome (completed, declined, too_late: succeeded for an order no longer processing or whose payment another delivery declined, interrupted).",
	}, []string{"outcome"})
	notificationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_worker_notifications_total",
		Help: "Notifications recorded, by event type (OrderCompleted ones with their e-mail sent).",
	}, []string{"event_type"})
)

// Collectors are the worker's metrics, for a process registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{paymentsInFlight, payments, notificationsTotal}
}

func registerMetrics(reg prometheus.Registerer) error {
	return metrics.Register(reg, Collectors()...)
}
