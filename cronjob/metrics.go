package cronjob

import (
	"github.com/prometheus/client_golang/prometheus"

	"orderflow/platform/metrics"
)

// The sweep's metrics, registered on the process's registry by Module.
var (
	runs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_expiry_runs_total",
		Help: "Expiry sweeps run, by outcome (ok, failed).",
	}, []string{"outcome"})
	expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orderflow_orders_expired_total",
		Help: "Orders the expiry sweep moved from processing to expired.",
	})
	runDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "orderflow_expiry_run_duration_seconds",
		Help:    "Duration of one expiry sweep.",
		Buckets: []float64{.01, .05, .1, .5, 1, 2.5, 5, 10, 30, 60},
	})
)

// Collectors are the sweep's metrics, for a process registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{runs, expired, runDuration}
}

func registerMetrics(reg prometheus.Registerer) error {
	return metrics.Register(reg, Collectors()...)
}

// observeRun records one finished run; a failed run's committed batches still count.
func observeRun(res Result, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	runs.WithLabelValues(outcome).Inc()
	expired.Add(float64(res.Expired))
	runDuration.Observe(res.Duration.Seconds())
}
