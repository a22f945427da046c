package bus

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HeaderRequestID is the message header carrying the id of the request that caused an
// event, so one order can be followed through the logs of every process.
const HeaderRequestID = "x-request-id"

// The consumer's metrics, registered on the process's registry by Module.
var (
	consumed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_events_consumed_total",
		Help: "Deliveries handled, by consumer, event type and outcome (ack, requeue, dead_letter).",
	}, []string{"consumer", "type", "outcome"})
	handlerDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "orderflow_event_handler_duration_seconds",
		Help:    "Time a handler took for one delivery, by consumer (includes a simulated payment).",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 2.5, 5, 10, 30},
	}, []string{"consumer"})
	redelivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_events_redelivered_total",
		Help: "Deliveries that the broker had delivered before, by consumer.",
	}, []string{"consumer"})
	published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orderflow_events_published_total",
		Help: "Messages published, by outcome (confirmed, failed).",
	}, []string{"outcome"})
)

// Collectors are the bus's metrics, for a process registry.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{consumed, handlerDuration, redelivered, published, deadLetters}
}

func observeDelivery(consumer, eventType, outcome string, again bool, took time.Duration) {
	consumed.WithLabelValues(consumer, eventType, outcome).Inc()
	handlerDuration.WithLabelValues(consumer).Observe(took.Seconds())
	if again {
		redelivered.WithLabelValues(consumer).Inc()
	}
}
