package bus

import (
	"context"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"orderflow/configuration"
	"orderflow/platform/log"
)

// TestModule runs bus.Module in an fx app: the connection comes up with the system queues, a
// consumer contributed with AsConsumer receives what the Publisher sends, and the app stops
// cleanly.
func TestModule(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	cfg.RabbitMQ = rabbitConfig(t)
	deleteAtCleanup(t, cfg.RabbitMQ, NewTopology(cfg.RabbitMQ.Exchange, 0, nil))
	got := make(chan Delivery, 1)
	var conn *Conn
	var pub *Publisher
	app := fxtest.New(t,
		fx.Supply(&cfg, testLogger(), log.Process("test")),
		Module,
		fx.Provide(AsConsumer(func() Registration {
			return Registration{Consumer: ConsumerOrderExpired, Handler: func(_ context.Context, d Delivery) error {
				got <- d
				return nil
			}}
		})),
		fx.Populate(&conn, &pub),
	)
	app.RequireStart()
	defer app.RequireStop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, message("order.expired", 1)); err != nil {
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
	if conn.name != "orderflow-test" {
		t.Errorf("connection name %q", conn.name)
	}
}
