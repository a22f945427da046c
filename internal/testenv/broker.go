package testenv

import (
	"testing"

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
		conn, err := amqp.Dial(cfg.URL())
		if err != nil {
			t.Logf("testenv: delete the test's queues: %v", err)
			return
		}
		defer conn.Close()
		exchanges, queues := BrokerNames(cfg.Exchange)
		for _, q := range queues {
			ch, err := conn.Channel()
			if err != nil {
				return
			}
			// A missing queue is fine: not every test declares every queue.
			_, _ = ch.QueueDelete(q, false /* ifUnused */, false /* ifEmpty */, false /* noWait */)
			_ = ch.Close()
		}
		for _, e := range exchanges {
			ch, err := conn.Channel()
			if err != nil {
				return
			}
			_ = ch.ExchangeDelete(e, false /* ifUnused */, false /* noWait */)
			_ = ch.Close()
		}
	})
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
