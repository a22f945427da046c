package bus

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"orderflow/configuration"
	"orderflow/platform/health"
	"orderflow/platform/log"
)

// TestModule runs bus.Module in an fx app: the connection comes up with the system queues, a
// consumer run with RunConsumers receives what the Publisher sends, and the app stops
// cleanly.
func TestModule(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	cfg.RabbitMQ = rabbitConfig(t)
	deleteAtCleanup(t, cfg.RabbitMQ, NewTopology(cfg.RabbitMQ.Exchange, 0, nil))
	got := make(chan Delivery, 1)
	requestIDs := make(chan string, 1)
	var conn *Conn
	var pub *Publisher
	reg := prometheus.NewRegistry()
	app := fxtest.New(t,
		fx.Supply(&cfg, testLogger(), log.Process("test")),
		fx.Provide(func() prometheus.Registerer { return reg }),
		Module,
		fx.Invoke(func(lc fx.Lifecycle, c *Conn) {
			RunConsumers(lc, NewConsumer(c, ConsumerOrderExpired, cfg.RabbitMQ.Prefetch, func(ctx context.Context, d Delivery) error {
				requestIDs <- log.RequestID(ctx)
				got <- d
				return nil
			}))
		}),
		fx.Populate(&conn, &pub),
	)
	app.RequireStart()
	defer app.RequireStop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	m := message("order.expired", 1)
	m.Headers = map[string]string{HeaderRequestID: "req-77"}
	if err := pub.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d.MessageID != "m-1" {
			t.Errorf("delivery %+v", d)
		}
	case <-ctx.Done():
		t.Fatal("the consumer received nothing")
	}
	if id := <-requestIDs; id != "req-77" {
		t.Errorf("handler's context carries request id %q, want the message's", id)
	}
	if conn.name != "orderflow-test" {
		t.Errorf("connection name %q", conn.name)
	}
	// The publisher has a connection of its own, which a resource alarm may block without
	// stopping the consumers' acknowledgements.
	if pub.conn == conn || pub.conn.name != "orderflow-test-publisher" {
		t.Errorf("publisher on connection %q, want its own, orderflow-test-publisher", pub.conn.name)
	}
	// The delivery is counted once acked, just after the handler returned.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := testutil.ToFloat64(consumed.WithLabelValues(ConsumerOrderExpired, "test.v1", "ack"))
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the acked delivery was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := testutil.ToFloat64(published.WithLabelValues("confirmed")); n < 1 {
		t.Errorf("published confirmed = %v", n)
	}
	if count, err := testutil.GatherAndCount(reg, "orderflow_events_consumed_total"); err != nil || count == 0 {
		t.Errorf("registry does not expose the consumer metrics: %d, %v", count, err)
	}
	// RunConsumers counts the consumers' dead-letter queues from the start.
	dlq := DeadLetterQueue(conn.Topology().QueueName(ConsumerOrderExpired))
	deadline = time.Now().Add(5 * time.Second)
	for !hasSeries(t, deadLetters, "queue", dlq) {
		if time.Now().After(deadline) {
			t.Fatalf("%s was not counted", dlq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hasSeries tells whether c holds a series whose label has value.
func hasSeries(t *testing.T, c prometheus.Collector, label, value string) bool {
	t.Helper()
	ch := make(chan prometheus.Metric, 100)
	go func() { c.Collect(ch); close(ch) }()
	found := false
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			found = found || (l.GetName() == label && l.GetValue() == value)
		}
	}
	return found
}

// TestBrokerCheckRequiredOnlyByConsumers: with the broker unreachable, the check that Module
// adds to /readyz leaves a process that only publishes ready (its events wait in the outbox),
// and not one that consumes.
func TestBrokerCheckRequiredOnlyByConsumers(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	cfg.RabbitMQ = rabbitConfig(t)
	cfg.RabbitMQ.Port = 1 // nothing listens there
	consumes := fx.Invoke(func(c *Conn) {
		NewConsumer(c, ConsumerOrderExpired, 1, func(context.Context, Delivery) error { return nil })
	})
	for _, tc := range []struct {
		name  string
		extra fx.Option
		want  int
	}{
		{"publishes only", fx.Options(), http.StatusOK},
		{"consumes", consumes, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var checks []health.Check
			app := fxtest.New(t,
				fx.Supply(&cfg, testLogger()),
				fx.Provide(func() prometheus.Registerer { return prometheus.NewRegistry() }),
				Module,
				tc.extra,
				fx.Populate(fx.Annotate(&checks, fx.ParamTags(`group:"readiness"`))),
			)
			app.RequireStart()
			defer app.RequireStop()
			rec := httptest.NewRecorder()
			health.Readiness(checks).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.want || !strings.Contains(rec.Body.String(), `"rabbitmq":"unavailable`) {
				t.Errorf("/readyz with the broker unreachable = %d %s, want %d naming the broker", rec.Code, rec.Body, tc.want)
			}
		})
	}
}

// TestDeliveryRequestIDTakenOnlyWhenValid: a message's request id goes on into the log and
// into the headers of the events its handler writes, so one that the API would not take
// from a request (a message from another publisher) is left out.
func TestDeliveryRequestIDTakenOnlyWhenValid(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]string{
		"req-77":                 "req-77",
		"a\x00b":                 "",
		"with spaces":            "",
		strings.Repeat("r", 129): "",
	} {
		ctx, span := deliveryContext(context.Background(), ConsumerOrderExpired, amqp.Delivery{
			RoutingKey: "order.expired",
			Headers:    amqp.Table{HeaderRequestID: id},
		})
		span.End()
		if got := log.RequestID(ctx); got != want {
			t.Errorf("header %q: request id %q, want %q", id, got, want)
		}
	}
}

// TestStopLeavesTheLaterHooksTime: a handler that does not end before the stop deadline
// does not use it all up. fx runs no stop hook past the deadline, and the hooks that stop
// after the consumers (in a process, the outbox relay's, which publishes what the handlers
// committed, and the connections') still run.
func TestStopLeavesTheLaterHooksTime(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	cfg.RabbitMQ = rabbitConfig(t)
	deleteAtCleanup(t, cfg.RabbitMQ, NewTopology(cfg.RabbitMQ.Exchange, 0, nil))
	handling := make(chan struct{}, 1)
	later := make(chan struct{})
	var pub *Publisher
	var conn *Conn
	app := fxtest.New(t,
		fx.Supply(&cfg, testLogger(), log.Process("test")),
		fx.Provide(func() prometheus.Registerer { return prometheus.NewRegistry() }),
		Module,
		fx.Invoke(func(lc fx.Lifecycle) {
			// Appended before the consumers' hook, so it stops after them.
			lc.Append(fx.Hook{OnStop: func(context.Context) error { close(later); return nil }})
		}),
		fx.Invoke(func(lc fx.Lifecycle, c *Conn) {
			RunConsumers(lc, NewConsumer(c, ConsumerOrderExpired, cfg.RabbitMQ.Prefetch, func(ctx context.Context, d Delivery) error {
				handling <- struct{}{}
				<-ctx.Done() // runs until the stop cuts it short
				return ctx.Err()
			}))
		}),
		fx.Populate(&pub, &conn),
	)
	app.RequireStart()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, message("order.expired", 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handling:
	case <-ctx.Done():
		t.Fatal("the consumer received nothing")
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer stopCancel()
	err := app.Stop(stopCtx)
	select {
	case <-later:
	default:
		t.Fatalf("the hook after the consumers did not run (stop: %v)", err)
	}
}
