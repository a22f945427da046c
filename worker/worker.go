// Package worker is orderflow's event worker: it takes orders through their simulated
// payment (OrderCreated), tells customers about completed orders (OrderCompleted) and keeps
// an audit trail of expired ones (OrderExpired).
//
// RabbitMQ delivers every event at least once, so every handler is idempotent: state changes
// are conditional updates on the expected previous status, events are written to the outbox
// in the same transaction as the change they announce, and notifications are unique per
// order and event type. The README ("An order found in processing on redelivery") says
// what happens to an order whose payment was interrupted.
//
// Worker.Handle decodes a delivery and calls the handler of its type. A new event type needs
// a handler here and its case in dispatch; RegisterConsumers consumes every queue of
// bus.SystemQueues. The package comment of events lists the other places it touches.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"orderflow/configuration"
	"orderflow/ent"
	"orderflow/events"
	"orderflow/platform/bus"
	"orderflow/platform/outbox"
)

// errOrderGone reports that the order an event is about no longer exists.
var errOrderGone = errors.New("order no longer exists")

// Options are the worker's tunables.
type Options struct {
	// PaymentDelay is how long the simulated payment of one order takes.
	PaymentDelay time.Duration
	// CompletionProbability is the probability in [0, 1] that a payment succeeds.
	CompletionProbability float64
	// Random draws the number in [0, 1) that decides an order's payment: the payment
	// succeeds when it is below CompletionProbability. Nil means DefaultRandom.
	Random RandomSource
	// Mailer sends the customer e-mails. Nil means a LogMailer on the worker's logger.
	Mailer Mailer
	// MaxPaymentsInFlight is the prefetch of the OrderCreated consumer (Module), and so the
	// most payments that run at once. Zero means the configuration's default
	// (orders.maxPaymentsInFlight).
	MaxPaymentsInFlight int
}

// Worker handles the order events. Its methods are safe for concurrent use; many payments
// run at once, each holding neither a database connection nor a goroutine while it waits.
type Worker struct {
	client *ent.Client
	log    *slog.Logger
	opts   Options
	// The statements that the handlers running at once share (orderBatch):
	claims      *orderBatch[struct{}]   // pending -> processing
	completions *orderBatch[outbox.Row] // processing -> completed, with its OrderCompleted event
	declines    *orderBatch[struct{}]   // a processing order's declined payment recorded
	expiries    *orderBatch[string]     // OrderExpired notifications, each with its message

	inFlight atomic.Int64 // simulated payments running now
	outage   atomic.Bool  // the database was found unavailable and not reached since
	// attemptTimeout bounds one attempt of the handlers' database work: the constant
	// attemptTimeout, shorter in tests (SetAttemptTimeout).
	attemptTimeout time.Duration
}

// New returns a worker that keeps its state in client and logs to log.
func New(client *ent.Client, log *slog.Logger, opts Options) *Worker {
	if opts.Random == nil {
		opts.Random = DefaultRandom
	}
	if opts.MaxPaymentsInFlight <= 0 {
		opts.MaxPaymentsInFlight = configuration.Defaults().Orders.MaxPaymentsInFlight
	}
	if opts.Mailer == nil {
		opts.Mailer = LogMailer{Log: log}
	}
	w := &Worker{client: client, log: log, opts: opts, attemptTimeout: attemptTimeout}
	w.claims, w.completions, w.declines, w.expiries = newClaims(w), newCompletions(w), newDeclines(w), newExpiryNotes(w)
	return w
}

// Delivery is one message as the worker sees it.
type Delivery struct {
	// Body is the message body, a CloudEvents envelope in structured JSON mode.
	Body []byte
	// Redelivered is the broker's redelivered flag: an earlier delivery of this very
	// message was not acknowledged (its handler failed, was stopped, or its channel closed).
	// A copy published again by an outbox relay is a new message and is not redelivered; a
	// message moved back from a dead-letter queue is (bus.Delivery.DeadLettered).
	Redelivered bool
}

// Handle decodes d and passes it to the handler of its type. It returns nil when the message
// is done with (handled, a duplicate, or about an order that no longer exists), an error
// wrapping bus.ErrPermanent when it can never be handled (the consumer dead-letters it), and
// any other error when it should be delivered again later (a database outage, a shutdown
// during a payment). It returns once a payment is over.
func (w *Worker) Handle(ctx context.Context, d Delivery) error {
	return bus.Finish(ctx, w.handle(ctx, d))
}

// handle is Handle for the consumer: it returns a payment's wait as bus.After.
func (w *Worker) handle(ctx context.Context, d Delivery) error {
	env, ev, err := events.Decode(d.Body)
	if err != nil {
		return bus.Permanent(err)
	}
	return w.dispatch(ctx, env, ev, d.Redelivered)
}

// errNoHandler: the event is of a type that the worker does not handle.
var errNoHandler = errors.New("no handler for event type")

// dispatch passes ev to the handler of its type.
func (w *Worker) dispatch(ctx context.Context, env events.Envelope, ev events.Event, redelivered bool) error {
	switch e := ev.(type) {
	case events.OrderCreated:
		return w.handleOrderCreated(ctx, env, e, redelivered)
	case events.OrderCompleted:
		return w.handleOrderCompleted(ctx, env, e)
	case events.OrderExpired:
		return w.handleOrderExpired(ctx, env, e)
	default:
		return bus.Permanent(fmt.Errorf("%w %s", errNoHandler, env.Type))
	}
}
