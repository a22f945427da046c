package bus

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"orderflow/events"
)

// DefaultDeliveryLimit is how often a quorum queue delivers a message that keeps being
// returned (a handler error, a crash) before dead-lettering it.
const DefaultDeliveryLimit = 5

// Queue is one consumer's queue, bound to one routing key.
type Queue struct {
	// Consumer names the consumer; the queue is "<exchange>.<Consumer>".
	Consumer string
	// RoutingKey is the key the queue is bound to.
	RoutingKey string
}

// The system's consumers: the worker consumes them, and every process declares their queues
// so that no event is unroutable before the worker has started.
const (
	ConsumerOrderCreated   = "order-created"
	ConsumerOrderCompleted = "order-completed"
	ConsumerOrderExpired   = "order-expired"
)

// SystemQueues lists the queues of the system's consumers.
func SystemQueues() []Queue {
	return []Queue{
		{Consumer: ConsumerOrderCreated, RoutingKey: events.RoutingKeyOrderCreated},
		{Consumer: ConsumerOrderCompleted, RoutingKey: events.RoutingKeyOrderCompleted},
		{Consumer: ConsumerOrderExpired, RoutingKey: events.RoutingKeyOrderExpired},
	}
}

// Topology names the broker objects derived from one exchange name; tests isolate themselves
// by choosing their own exchange. For the exchange "orderflow.events" and the consumer
// "order-created": queue "orderflow.events.order-created", dead-letter exchange
// "orderflow.events.dlx", dead-letter queue "orderflow.events.order-created.dlq".
type Topology struct {
	Exchange      string
	DeliveryLimit int
	Queues        []Queue
}

// NewTopology returns the topology of exchange with the given queues (SystemQueues when nil)
// and delivery limit (DefaultDeliveryLimit when 0).
func NewTopology(exchange string, deliveryLimit int, queues []Queue) Topology {
	if deliveryLimit <= 0 {
		deliveryLimit = DefaultDeliveryLimit
	}
	if queues == nil {
		queues = SystemQueues()
	}
	return Topology{Exchange: exchange, DeliveryLimit: deliveryLimit, Queues: queues}
}

// QueueName is the queue of consumer.
func (t Topology) QueueName(consumer string) string { return t.Exchange + "." + consumer }

// DeadLetterExchange receives the messages that the queues reject or give up on.
func (t Topology) DeadLetterExchange() string { return t.Exchange + ".dlx" }

// DeadLetterQueue is the queue that collects the dead letters of queue.
func DeadLetterQueue(queue string) string { return queue + ".dlq" }

// Names lists every exchange and queue of the topology (for clean-up in tests).
func (t Topology) Names() (exchanges, queues []string) {
	exchanges = []string{t.Exchange, t.DeadLetterExchange()}
	for _, q := range t.Queues {
		name := t.QueueName(q.Consumer)
		queues = append(queues, name, DeadLetterQueue(name))
	}
	return exchanges, queues
}

// declare declares the exchanges, queues and bindings; declaring again with the same
// arguments changes nothing.
func (t Topology) declare(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("declare topology: %w", err)
	}
	defer ch.Close()
	dlx := t.DeadLetterExchange()
	for _, name := range []string{t.Exchange, dlx} {
		kind := amqp.ExchangeTopic
		if name == dlx {
			kind = amqp.ExchangeDirect
		}
		err := ch.ExchangeDeclare(name, kind,
			true,  // durable
			false, // auto-delete
			false, // internal
			false, // no-wait
			nil)
		if err != nil {
			return fmt.Errorf("declare exchange %s: %w", name, err)
		}
	}
	for _, q := range t.Queues {
		name := t.QueueName(q.Consumer)
		dlq := DeadLetterQueue(name)
		if err := declareQueue(ch, dlq, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
			return err
		}
		// Dead letters keep their routing key unless told otherwise; routing them by queue
		// name sends each queue's dead letters to its own dead-letter queue.
		if err := bind(ch, dlq, name, dlx); err != nil {
			return err
		}
		err := declareQueue(ch, name, amqp.Table{
			amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
			"x-delivery-limit":          int32(t.DeliveryLimit),
			"x-dead-letter-exchange":    dlx,
			"x-dead-letter-routing-key": name,
			"x-dead-letter-strategy":    "at-least-once",
			amqp.QueueOverflowArg:       amqp.QueueOverflowRejectPublish,
		})
		if err != nil {
			return err
		}
		if err := bind(ch, name, q.RoutingKey, t.Exchange); err != nil {
			return err
		}
	}
	return nil
}

func declareQueue(ch *amqp.Channel, name string, args amqp.Table) error {
	_, err := ch.QueueDeclare(name,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		args)
	if err != nil {
		return fmt.Errorf("declare queue %s: %w", name, err)
	}
	return nil
}

func bind(ch *amqp.Channel, queue, key, exchange string) error {
	if err := ch.QueueBind(queue, key, exchange, false /* no-wait */, nil); err != nil {
		return fmt.Errorf("bind queue %s to %s with %s: %w", queue, exchange, key, err)
	}
	return nil
}
