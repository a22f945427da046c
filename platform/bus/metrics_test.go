package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"orderflow/internal/testutil"
)

// TestHandlerDurationIsTheHandlers: orderflow_event_handler_duration_seconds times the
// handler, and not the wait before a failed delivery is requeued, which would show a
// handler that fails at once as one that takes that long.
func TestHandlerDurationIsTheHandlers(t *testing.T) {
	t.Parallel()
	const consumer = "handler-duration"
	c := startConn(t, rabbitConfig(t), Options{Queues: []Queue{{Consumer: consumer, RoutingKey: testKey}}, DeliveryLimit: 100})
	cons := NewConsumer(c, consumer, 1, func(context.Context, Delivery) error {
		return errors.New("database unavailable")
	})
	cons.requeueDelay = 2 * time.Second
	cons.Start()
	defer cons.Stop(context.Background())
	if err := NewPublisher(c).Publish(context.Background(), message(testKey, 1)); err != nil {
		t.Fatal(err)
	}
	var m dto.Metric
	testutil.Eventually(t, 20*time.Second, "a failed delivery timed", func() bool {
		if err := handlerDuration.WithLabelValues(consumer).(prometheus.Histogram).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount() >= 1
	})
	if took := m.GetHistogram().GetSampleSum() / float64(m.GetHistogram().GetSampleCount()); took >= cons.requeueDelay.Seconds() {
		t.Errorf("a handler that failed at once took %.3fs, which includes the requeue delay of %s", took, cons.requeueDelay)
	}
}
