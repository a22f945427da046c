package worker

import (
	"context"
	"log/slog"

	"go.uber.org/fx"

	"orderflow/configuration"
	"orderflow/ent"
	"orderflow/platform/bus"
)

// Module runs the worker in an fx app: a consumer on each queue of bus.SystemQueues,
// on the process's bus connection. It needs *configuration.Config, *ent.Client and
// *slog.Logger, bus.Module for the connection, the outbox relay (outbox.Module) to publish
// the OrderCompleted events the worker writes, and the prometheus.Registerer of
// metrics.Module. On stop the consumers take no new deliveries and let the handlers in
// flight finish until shortly before the stop deadline (bus.RunConsumers keeps a quarter of
// it, at most 3 s, for the steps after them); payments still running then are interrupted
// and their messages delivered again.
var Module = fx.Module("worker",
	fx.Provide(NewFromConfig),
	fx.Invoke(registerMetrics, RegisterConsumers),
)

// NewFromConfig returns the worker configured by cfg.
func NewFromConfig(cfg *configuration.Config, client *ent.Client, log *slog.Logger) *Worker {
	return New(client, log.With("component", "worker"), Options{
		PaymentDelay:          cfg.Orders.PaymentDelay.D(),
		CompletionProbability: cfg.Orders.CompletionProbability,
		MaxPaymentsInFlight:   cfg.Orders.MaxPaymentsInFlight,
	})
}

// RegisterConsumers starts a consumer of every queue of bus.SystemQueues with the app, and
// stops them together, before the connection closes, when the app stops. The OrderCreated
// consumer's prefetch is Options.MaxPaymentsInFlight; the others use rabbitmq.prefetch.
func RegisterConsumers(lc fx.Lifecycle, cfg *configuration.Config, conn *bus.Conn, w *Worker) {
	var consumers []*bus.Consumer
	for _, q := range bus.SystemQueues() {
		prefetch := cfg.RabbitMQ.Prefetch
		if q.Consumer == bus.ConsumerOrderCreated {
			prefetch = w.opts.MaxPaymentsInFlight
		}
		consumers = append(consumers, bus.NewConsumer(conn, q.Consumer, prefetch, w.consume))
	}
	bus.RunConsumers(lc, consumers...)
}

// consume is the bus handler of every queue. A message moved back from its dead-letter
// queue counts as redelivered: an earlier delivery of it was not acknowledged.
func (w *Worker) consume(ctx context.Context, d bus.Delivery) error {
	return w.handle(ctx, Delivery{Body: d.Body, Redelivered: d.Redelivered || d.DeadLettered()})
}
