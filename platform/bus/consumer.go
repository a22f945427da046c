package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"orderflow/platform/log"
	"orderflow/platform/tracing"
)

// ErrPermanent marks a handler error for a message that can never be handled (malformed,
// unknown type): the message is rejected without requeue and goes to the dead-letter queue.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that it matches ErrPermanent.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// ErrChannelClosed is the cause (context.Cause) of a handler's context that ended because the
// channel of its delivery closed: the delivery can no longer be acknowledged, and the broker
// delivers the message again.
var ErrChannelClosed = errors.New("bus: the delivery's channel closed")

// maxPrefetchPerChannel is the most a quorum queue delivers to one consumer at once; a larger
// prefetch is spread over several consumer channels.
const maxPrefetchPerChannel = 2000

// requeueDelay is how long a delivery whose handler failed transiently waits before it goes
// back to the queue, so that a failing dependency is not hammered.
const requeueDelay = time.Second

// ackTimeout is the consumer timeout a subscription asks the broker for (x-consumer-timeout,
// RabbitMQ 3.12 and later; older brokers ignore it): how long a delivery may stay
// unacknowledged before the broker closes the channel and delivers the message again. A
// handler keeps its message while the database is away (the worker's retry), and every such
// redelivery counts toward the queue's delivery limit: with the broker's default of 30
// minutes, an outage of two and a half hours would send the messages in flight to the
// dead-letter queue. Handlers bound their own work, so the broker's guard against a stuck
// consumer is left only for an outage of a day.
const ackTimeout = 24 * time.Hour

// loopsExitGrace is how long Stop, past its deadline, waits for the subscriptions to end:
// they do at once unless a call to the broker holds one.
const loopsExitGrace = 100 * time.Millisecond

// interruptGrace is how long a subscription whose channel closed waits for its interrupted
// handlers to return before it subscribes again without them.
const interruptGrace = 10 * time.Second

// Delivery is one message handed to a Handler.
type Delivery struct {
	Body        []byte
	MessageID   string
	Type        string
	RoutingKey  string
	Headers     amqp.Table
	Timestamp   time.Time
	Redelivered bool
	// DeliveryCount is how often the queue delivered the message before (0 the first time).
	DeliveryCount int64
}

// DeadLettered tells whether the message was dead-lettered before and then published again:
// moved back from a dead-letter queue (the management UI's "Move messages"), whose copy
// carries the x-death header the broker added. Such a copy is a new message, not flagged
// redelivered, and its queue's delivery count starts again.
func (d Delivery) DeadLettered() bool {
	_, ok := d.Headers["x-death"]
	return ok
}

// Handler handles one delivery. nil acks it; an error wrapping ErrPermanent rejects it to the
// dead-letter queue; After leaves the rest for later; any other error requeues it after a
// short delay, up to the queue's delivery limit. The context ends when the delivery's
// channel closes (the cause is then ErrChannelClosed: the delivery can no longer be
// acknowledged, and the broker delivers the message again) or when the consumer's stop
// deadline passes; an error returned after that is taken for the interruption, not for a
// failure.
type Handler func(ctx context.Context, d Delivery) error

// Consumer runs a Handler on every message of one queue, concurrently up to the prefetch,
// and resubscribes by itself after a connection drop, once the handlers that the drop
// interrupted have returned, or after interruptGrace without those that have not.
type Consumer struct {
	conn     *Conn
	consumer string
	queue    string
	handler  Handler
	log      *slog.Logger
	// perChannel is the prefetch of each of the consumer's channels.
	perChannel []int
	// requeueDelay is how long a transiently failed delivery waits before it is requeued.
	requeueDelay time.Duration
	// interruptGrace is how long a subscription whose channel closed waits for its handlers.
	interruptGrace time.Duration

	stopping   chan struct{}
	stopOnce   sync.Once
	handlerCtx context.Context
	abort      context.CancelFunc
	loops      sync.WaitGroup
	inFlight   sync.WaitGroup
	running    atomic.Int64 // handlers in flight, as inFlight counts them
}

// NewConsumer returns a consumer of the queue of consumer (a Topology consumer name) with the
// given prefetch; Start begins consuming.
func NewConsumer(conn *Conn, consumer string, prefetch int, h Handler) *Consumer {
	queue := conn.topology.QueueName(consumer)
	conn.consumers.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	return &Consumer{
		conn: conn, consumer: consumer, queue: queue, handler: h,
		perChannel: splitPrefetch(prefetch, maxPrefetchPerChannel), requeueDelay: requeueDelay,
		interruptGrace: interruptGrace,
		log:            conn.log.With("queue", queue),
		stopping:       make(chan struct{}), handlerCtx: ctx, abort: cancel,
	}
}

// splitPrefetch spreads prefetch over as few channels as keep each at most limit.
func splitPrefetch(prefetch, limit int) []int {
	if prefetch < 1 {
		prefetch = 1
	}
	n := (prefetch + limit - 1) / limit
	per := make([]int, n)
	for i := range per {
		per[i] = prefetch / n
		if i < prefetch%n {
			per[i]++
		}
	}
	return per
}

// Start begins consuming in the background and returns at once.
func (c *Consumer) Start() {
	for i, prefetch := range c.perChannel {
		c.loops.Add(1)
		go c.run(i, prefetch)
	}
}

// Stop cancels the subscriptions, waits for the handlers in flight to finish until ctx ends
// (then cancels their context and waits for them to return), and closes the channels.
func (c *Consumer) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { close(c.stopping) })
	defer c.abort()
	loops := waitDone(&c.loops)
	select {
	case <-loops:
	case <-ctx.Done():
		// The deadline may have passed before Stop began: subscriptions that are not waiting
		// for the broker end at once, and their handlers are then cancelled and waited for
		// below. A subscription's call to a broker that stopped answering returns only when
		// the connection closes.
		select {
		case <-loops:
		case <-time.After(loopsExitGrace):
			return fmt.Errorf("stop consumer of %s: the broker does not answer: %w", c.queue, ctx.Err())
		}
	}
	done := waitDone(&c.inFlight)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// A deadline that had passed before Stop is ready before done is closed: with no
		// handler in flight it cut none short.
		if c.running.Load() == 0 {
			<-done
			return nil
		}
		c.abort()
		<-done
		return fmt.Errorf("stop consumer of %s: handlers still running: %w", c.queue, ctx.Err())
	}
}

// StopConsumers stops cs together, each as Stop does: none of them goes on taking deliveries
// while another waits for its handlers, and all share the deadline of ctx instead of using it
// up in turn.
func StopConsumers(ctx context.Context, cs ...*Consumer) error {
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { errs[i] = c.Stop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// run subscribes on a channel of its own and hands deliveries to handlers, resubscribing on a
// new channel after a drop, until Stop.
func (c *Consumer) run(index, prefetch int) {
	defer c.loops.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.stopping
		cancel()
	}()
	backoff := minBackoff
	for {
		subscribed, err := c.consume(ctx, index, prefetch)
		select {
		case <-c.stopping:
			return
		default:
		}
		if subscribed {
			// A working subscription ended: this is a new outage, not another failed
			// attempt of the last one.
			backoff = minBackoff
		}
		c.conn.restore(err)
		c.log.Warn("consumer interrupted, resubscribing", "retry_in", backoff, "error", err)
		select {
		case <-time.After(backoff):
		case <-c.stopping:
			return
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// consume runs one subscription until its channel closes or Stop, and reports whether it
// got as far as subscribing; it returns a nil error only on Stop. Handlers started here ack
// on this channel. When it closes they can no longer ack, and the broker delivers their
// messages again: their context is cancelled, and consume waits for them before it returns
// (see interrupt). On Stop they finish on this channel, which closes after them.
func (c *Consumer) consume(ctx context.Context, index, prefetch int) (subscribed bool, err error) {
	ch, err := c.conn.channel(ctx)
	if err != nil {
		return false, err
	}
	// Closing the channel after Stop also returns the prefetched messages that no handler
	// has started; handlers still running ack through it, so close only once they are done.
	closeCh := true
	defer func() {
		if closeCh {
			_ = ch.Close()
		}
	}()
	if err := ch.Qos(prefetch, 0, false /* global: per consumer */); err != nil {
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	tag := fmt.Sprintf("%s-%d-%p", c.queue, index, ch)
	deliveries, err := ch.Consume(c.queue, tag,
		false, // auto-ack: handlers ack
		false, // exclusive
		false, // no-local
		false, // no-wait
		amqp.Table{"x-consumer-timeout": ackTimeout.Milliseconds()})
	if err != nil {
		return false, fmt.Errorf("consume %s: %w", c.queue, err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	handlerCtx, cancelHandlers := context.WithCancelCause(c.handlerCtx)
	var handlers sync.WaitGroup
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return true, c.interrupt(cancelHandlers, &handlers, errors.New("delivery channel closed"))
			}
			c.inFlight.Add(1)
			c.running.Add(1)
			handlers.Add(1)
			go c.handle(handlerCtx, d, func() {
				handlers.Done()
				c.running.Add(-1)
				c.inFlight.Done()
			})
		case amqpErr := <-closed:
			return true, c.interrupt(cancelHandlers, &handlers, channelError(amqpErr))
		case <-ctx.Done():
			// No new deliveries; the ones in flight finish on this channel, unless it closes
			// first. Not waiting for the broker's answer keeps a broker that stopped answering
			// from holding up Stop; what it delivers meanwhile is requeued when the channel
			// closes.
			if err := ch.Cancel(tag, true /* no-wait */); err != nil {
				c.log.Warn("cancel consumer", "error", err)
			}
			closeCh = false
			go func() {
				done := waitDone(&handlers)
				select {
				case <-done:
				case amqpErr := <-closed:
					cancelHandlers(fmt.Errorf("%w: %w", ErrChannelClosed, channelError(amqpErr)))
					<-done
				}
				_ = ch.Close()
				cancelHandlers(nil)
			}()
			return true, nil
		}
	}
}

// interrupt cancels the handlers of a subscription whose channel closed with err, and waits
// for them to return before the consumer subscribes again: the broker delivers their messages
// again, maybe to this very consumer, and two handlers of one message must not run at once.
// A handler that ignores its context is given up on after interruptGrace, so that it does
// not hold up the consumer. It returns err.
func (c *Consumer) interrupt(cancelHandlers context.CancelCauseFunc, handlers *sync.WaitGroup, err error) error {
	cancelHandlers(fmt.Errorf("%w: %w", ErrChannelClosed, err))
	select {
	case <-waitDone(handlers):
	case <-time.After(c.interruptGrace):
		c.log.Warn("handlers still running after their channel closed; subscribing again without waiting for them",
			"waited", c.interruptGrace, "error", err)
	case <-c.stopping:
		// Stop waits for them, until its deadline.
	}
	return err
}

// channelError is the error of a channel's close notification (nil when the channel was
// closed without one).
func channelError(amqpErr *amqp.Error) error {
	if amqpErr == nil {
		return errors.New("channel closed")
	}
	return amqpErr
}

// waitDone returns a channel closed once wg is done.
func waitDone(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// handle runs the handler on d with a context derived from parent, the context of the
// subscription's handlers, settles d on its own channel, and then calls done.
func (c *Consumer) handle(parent context.Context, d amqp.Delivery, done func()) {
	count, _ := d.Headers["x-delivery-count"].(int64)
	ctx, span := deliveryContext(parent, c.consumer, d)
	h := &handling{c: c, ctx: ctx, d: d, count: count, start: time.Now(), span: span, done: done}
	h.step(func(ctx context.Context) error {
		return c.handler(ctx, Delivery{
			Body: d.Body, MessageID: d.MessageId, Type: d.Type, RoutingKey: d.RoutingKey,
			Headers: d.Headers, Timestamp: d.Timestamp, Redelivered: d.Redelivered, DeliveryCount: count,
		})
	})
}

// handling is one delivery from its handler's start until it is settled.
type handling struct {
	c     *Consumer
	ctx   context.Context
	d     amqp.Delivery
	count int64 // the queue's x-delivery-count
	start time.Time
	span  trace.Span
	done  func()
}

// step runs fn, the handler or what it left for later, and settles the delivery by its
// result. When fn returns After, no goroutine waits: a timer runs the next step in a new one
// once the wait is over, or once the delivery's context ends.
func (h *handling) step(fn func(ctx context.Context) error) {
	err := h.c.call(h.ctx, h.d.MessageId, fn)
	var l *later
	if errors.As(err, &l) {
		wake, cancel := context.WithTimeout(h.ctx, l.wait)
		context.AfterFunc(wake, func() {
			cancel()
			h.step(l.then)
		})
		return
	}
	h.c.settle(h.ctx, h.d, h.count, time.Since(h.start), err)
	h.span.End()
	h.done()
}

// settle acknowledges or rejects d by its handler's result err, after took in the handler
// (without the wait before a requeue), and counts the outcome.
func (c *Consumer) settle(ctx context.Context, d amqp.Delivery, count int64, took time.Duration, err error) {
	var ackErr error
	outcome := "ack"
	switch {
	case err == nil:
		ackErr = d.Ack(false)
	case errors.Is(err, ErrPermanent):
		outcome = "dead_letter"
		c.log.ErrorContext(ctx, "message rejected to the dead-letter queue", "event_id", d.MessageId, "error", err)
		ackErr = d.Reject(false /* requeue */)
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrChannelClosed):
		// Interrupted, not failed. The channel is gone: the broker delivers the message again
		// by itself, and a reject could not reach it.
		outcome = "requeue"
		c.log.DebugContext(ctx, "handler interrupted: its channel closed, the broker delivers the message again", "event_id", d.MessageId, "error", err)
	case ctx.Err() != nil:
		// Interrupted, not failed: the stop deadline passed.
		outcome = "requeue"
		c.log.InfoContext(ctx, "handler interrupted by the stop deadline, message requeued", "event_id", d.MessageId, "error", err)
		ackErr = d.Reject(true /* requeue */)
	case count >= int64(c.conn.topology.DeliveryLimit):
		// The queue has delivered the message as often as its limit allows: requeued, it goes
		// to the dead-letter queue instead (x-first-death-reason delivery_limit).
		outcome = "dead_letter"
		c.log.ErrorContext(ctx, "handler failed, message dead-lettered: delivery limit reached", "event_id", d.MessageId, "delivery_count", count, "error", err)
		ackErr = d.Reject(true /* requeue */)
	default:
		outcome = "requeue"
		c.log.WarnContext(ctx, "handler failed, message requeued", "event_id", d.MessageId, "delivery_count", count, "error", err)
		select {
		case <-time.After(c.requeueDelay):
		case <-ctx.Done():
		}
		// Reject, not Nack: newer RabbitMQ versions count only rejects toward the delivery
		// limit.
		ackErr = d.Reject(true /* requeue */)
	}
	if ackErr != nil {
		// Not settled: the channel is gone, and the broker delivers the message again.
		outcome = "requeue"
	}
	observeDelivery(c.consumer, d.Type, outcome, d.Redelivered || count > 0, took)
	if ackErr != nil {
		c.log.WarnContext(ctx, "settle delivery on a closed channel; the broker redelivers it", "event_id", d.MessageId, "error", ackErr)
	}
}

// call runs fn, a step of the handler, for the message messageID. A panic becomes a permanent
// error, so the message goes to the dead-letter queue: a handler that panics on a message
// would panic on each of its deliveries, and ending the process would interrupt every other
// delivery in flight.
func (c *Consumer) call(ctx context.Context, messageID string, fn func(ctx context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			c.log.ErrorContext(ctx, "handler panicked", "event_id", messageID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = Permanent(fmt.Errorf("handler panicked: %v", v))
		}
	}()
	return fn(ctx)
}

// deliveryContext continues the trace and the request id that the message carries, so the
// handler's log lines and spans join those of the request that caused the event. A request
// id that the API would not have taken (a message from another publisher) is left out: it
// would go on into the headers of the events the handler writes, where one that PostgreSQL
// cannot store (a NUL) would fail the transaction of every handler writing with it.
func deliveryContext(parent context.Context, consumer string, d amqp.Delivery) (context.Context, trace.Span) {
	headers := make(map[string]string, len(d.Headers))
	for k, v := range d.Headers {
		if s, ok := v.(string); ok {
			headers[k] = s
		}
	}
	ctx := parent
	if id := headers[HeaderRequestID]; log.ValidRequestID(id) {
		ctx = log.WithRequestID(ctx, id)
	}
	ctx = tracing.Extract(ctx, headers)
	return tracing.Tracer().Start(ctx, "consume "+d.RoutingKey,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.consumer.group.name", consumer),
			attribute.String("messaging.message.id", d.MessageId)))
}
