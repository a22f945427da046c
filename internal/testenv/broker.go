package testenv

import (
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"orderflow/configuration"
)

// systemConsumers are the consumer names of bus.SystemQueues; a test in platform/bus keeps
// the two lists equal (this package cannot import bus, whose own tests import it).
var systemConsumers = []string{"order-created", "order-completed", "order-expired"}

// BrokerNames returns the exchanges and queues that the processes declare for exchange:
// the topic exchange, its dead-letter exchange, and each system queue with its
// dead-letter queue.
func BrokerNames(exchange string) (exchanges, queues []string) {
	for _, c := range systemConsumers {
		q := exchange + "." + c
		queues = append(queues, q, q+".dlq")
	}
	return []string{exchange, exchange + ".dlx"}, queues
}

// deleteBrokerNames removes, when the test ends, what processes declared for the test's
// exchange, so that test runs leave no queues behind on the shared broker. The broker may
// be unreachable by then (a fault test stopped it): that is not the test's failure.
func deleteBrokerNames(t testing.TB, cfg configuration.RabbitMQ) {
	t.Cleanup(func() {
		b := &brokerCleaner{url: cfg.URL()}
		defer b.close()
		exchanges, queues := BrokerNames(cfg.Exchange)
		for _, q := range queues {
			if err := b.deleteQueueWhenStarted(q); err != nil {
				t.Logf("testenv: delete the test's queues: %v", err)
				return
			}
		}
		for _, e := range exchanges {
			ch, err := b.channel()
			if err != nil {
				t.Logf("testenv: delete the test's exchanges: %v", err)
				return
			}
			_ = ch.ExchangeDelete(e, false /* ifUnused */, false /* noWait */)
			_ = ch.Close()
		}
	})
}

// brokerCleaner deletes a test's queues and exchanges, dialling again when the broker
// closed its connection.
type brokerCleaner struct {
	url  string
	conn *amqp.Connection
}

func (b *brokerCleaner) channel() (*amqp.Channel, error) {
	if b.conn == nil || b.conn.IsClosed() {
		conn, err := amqp.Dial(b.url)
		if err != nil {
			return nil, err
		}
		b.conn = conn
	}
	return b.conn.Channel()
}

func (b *brokerCleaner) close() {
	if b.conn != nil {
		_ = b.conn.Close()
	}
}

// deleteQueueWhenStarted deletes queue once the broker has started it. A process stopped
// while it declared the queue leaves the declaration running on the broker: RabbitMQ 3.10
// records a quorum queue before it starts the queue's Raft server, and a delete in between
// finds no server and deletes the queue by force; the server that starts next then crashes
// the broker's dead-letter supervisor, after which no queue of this topology can be declared
// until the broker restarts. A basic.get is answered only once the server runs (before, it
// fails the channel), so the delete waits for one, a second at most. A missing queue is
// fine: not every test declares every queue.
func (b *brokerCleaner) deleteQueueWhenStarted(queue string) error {
	for range 20 {
		ch, err := b.channel()
		if err != nil {
			return err
		}
		// A message taken goes back to the queue as the channel closes.
		_, _, err = ch.Get(queue, false /* autoAck */)
		_ = ch.Close()
		var amqpErr *amqp.Error
		if errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound {
			return nil
		}
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ch, err := b.channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDelete(queue, false /* ifUnused */, false /* ifEmpty */, false /* noWait */)
	return err
}

// AdminChannel opens a plain channel on the broker of cfg for a test to inspect or publish
// with; its connection closes when the test ends.
func AdminChannel(t testing.TB, cfg configuration.RabbitMQ) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(cfg.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
