package bus

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"orderflow/internal/testenv"
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
	publish(t, c, 1)
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

// TestAckOnAClosedChannelIsNotCountedAsAck: a handler that succeeds after its channel closed
// (as one that commits its work whatever happens does) cannot have its delivery acked; the
// broker delivers it again. orderflow_events_consumed_total counts that delivery as
// requeued, so that each message is counted acked once.
func TestAckOnAClosedChannelIsNotCountedAsAck(t *testing.T) {
	t.Parallel()
	const consumer = "ack-on-closed-channel"
	c := startConn(t, rabbitConfig(t), Options{Queues: []Queue{{Consumer: consumer, RoutingKey: testKey}}})
	acked := consumed.WithLabelValues(consumer, "test.v1", "ack")
	requeued := consumed.WithLabelValues(consumer, "test.v1", "requeue")
	ackedBefore, requeuedBefore := promtest.ToFloat64(acked), promtest.ToFloat64(requeued)
	first := make(chan struct{})
	var deliveries atomic.Int32
	cons := NewConsumer(c, consumer, 1, func(ctx context.Context, d Delivery) error {
		if deliveries.Add(1) == 1 {
			close(first)
			<-ctx.Done() // the channel closed; the handler finishes its work all the same
		}
		return nil
	})
	cons.Start()
	defer cons.Stop(context.Background())
	publish(t, c, 1)
	<-first
	if n := testenv.CloseConnections(t, c.name); n != 1 {
		t.Fatalf("closed %d connections, want 1", n)
	}
	testutil.Eventually(t, 30*time.Second, "both deliveries counted", func() bool {
		return promtest.ToFloat64(acked)+promtest.ToFloat64(requeued)-ackedBefore-requeuedBefore >= 2
	})
	if a, r := promtest.ToFloat64(acked)-ackedBefore, promtest.ToFloat64(requeued)-requeuedBefore; a != 1 || r != 1 {
		t.Errorf("one message delivered twice, acked the second time: counted %v acked and %v requeued, want 1 and 1", a, r)
	}
}
