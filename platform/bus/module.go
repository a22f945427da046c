package bus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"orderflow/configuration"
	"orderflow/platform/health"
	"orderflow/platform/log"
	"orderflow/platform/metrics"
)

// Module provides the process's *Conn, for its consumers, and its *Publisher, on a
// connection of its own (each declares the topology of every system queue whenever it
// connects), and adds the broker to /readyz. A process module runs its consumers with
// RunConsumers.
var Module = fx.Module("bus",
	fx.Provide(ProvideConn, ProvidePublisher, health.AsCheck(BrokerCheck)),
	fx.Invoke(func(reg prometheus.Registerer) error { return metrics.Register(reg, Collectors()...) }),
)

// RunConsumers starts consumers with the app and, when it stops, stops them together
// (StopConsumers), before their connection closes and before any hook appended before this
// call, such as the outbox relay's, which then publishes what their handlers wrote; the
// consumers leave those hooks part of the stop deadline (leaveForLaterHooks). Meanwhile
// it counts the messages in their queues' dead-letter queues every minute
// (watchDeadLetters). The consumers share one connection.
func RunConsumers(lc fx.Lifecycle, consumers ...*Consumer) {
	var (
		stopWatch context.CancelFunc
		watching  = make(chan struct{})
	)
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			queues := make([]string, len(consumers))
			for i, c := range consumers {
				c.Start()
				queues[i] = c.queue
			}
			var ctx context.Context
			ctx, stopWatch = context.WithCancel(context.Background())
			go func() {
				defer close(watching)
				if len(consumers) > 0 {
					watchDeadLetters(ctx, consumers[0].conn, queues, deadLetterInterval)
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			stopWatch()
			consumersCtx, cancel := leaveForLaterHooks(ctx)
			defer cancel()
			err := StopConsumers(consumersCtx, consumers...)
			select { // a count held by a silent broker ends once the connection closes, later
			case <-watching:
			case <-ctx.Done():
			}
			return err
		},
	})
}

// leaveForLaterHooks returns ctx with its deadline brought forward by a quarter of what is
// left of it, at most laterHooksShare: fx runs no stop hook once the deadline has passed, so
// consumers whose handlers ran to the deadline would leave the hooks after them (the
// relay's drain of what those handlers committed, the connections' closes) no time at all.
func leaveForLaterHooks(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline.Add(-min(time.Until(deadline)/4, laterHooksShare)))
}

// laterHooksShare is the most of the stop deadline that leaveForLaterHooks keeps back.
const laterHooksShare = 3 * time.Second

// ConnParams are the dependencies of ProvideConn.
type ConnParams struct {
	fx.In
	Lifecycle fx.Lifecycle
	Config    *configuration.Config
	Log       *slog.Logger
	// Process, when supplied, names the connection "orderflow-<process>" on the broker.
	Process log.Process `optional:"true"`
}

// ProvideConn returns the process's connection for its consumers ("orderflow-<process>" on
// the broker); it starts dialling when the app starts (start-up does not wait for the broker)
// and closes when the app stops.
func ProvideConn(p ConnParams) *Conn {
	return processConn(p, "")
}

// ProvidePublisher returns the process's publisher, on a connection of its own
// ("orderflow-<process>-publisher"). While a resource alarm lasts, RabbitMQ stops reading
// from every connection that publishes; consumers on the same connection could then no longer
// acknowledge, and a worker could not drain the queues whose backlog may have raised the
// alarm.
func ProvidePublisher(p ConnParams) *Publisher {
	return NewPublisher(processConn(p, "publisher"))
}

// processConn returns a connection of the process named with suffix, started and closed with
// the app.
func processConn(p ConnParams, suffix string) *Conn {
	name := "orderflow"
	for _, part := range []string{string(p.Process), suffix} {
		if part != "" {
			name += "-" + part
		}
	}
	c := NewConn(p.Config.RabbitMQ, p.Log, Options{Name: name})
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error { c.Start(); return nil },
		OnStop:  func(context.Context) error { return c.Close() },
	})
	return c
}

// BrokerCheck reports the process's two broker connections on /readyz. Only a process that
// consumes needs the broker to work: one that only publishes keeps its events in the outbox
// while the broker is away, so its broker is Optional, and a broker outage does not take it
// out of service.
func BrokerCheck(c *Conn, pub *Publisher) health.Check {
	return health.Check{Name: "rabbitmq", Check: func(ctx context.Context) error {
		err := c.Check(ctx)
		if err == nil {
			if err = pub.conn.Check(ctx); err != nil {
				err = fmt.Errorf("publishing connection: %w", err)
			}
		}
		if !c.consumed() {
			return health.Optional(err)
		}
		return err
	}}
}
