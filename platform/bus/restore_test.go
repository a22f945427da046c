package bus

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// TestPublisherDeclaresADeletedExchangeAgain: an exchange deleted by hand while a process is
// connected closes every publishing channel with 404 NOT_FOUND; the connection declares its
// topology again, and publishing resumes without a reconnection.
func TestPublisherDeclaresADeletedExchangeAgain(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	publish(t, c, 0)
	admin := testenv.AdminChannel(t, cfg)
	if err := admin.ExchangeDelete(cfg.Exchange, false, false); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(c)
	i := 0
	testutil.Eventually(t, 10*time.Second, "a message published after the exchange was deleted", func() bool {
		i++
		return p.Publish(context.Background(), message(testKey, i)) == nil
	})
	// Bound again, the queue got it.
	testutil.Eventually(t, 5*time.Second, "the message in the queue", func() bool {
		return queueLength(t, admin, c.Topology().QueueName("c")) == 2
	})
}

// TestConsumerDeclaresADeletedQueueAgain: a queue deleted by hand while the worker consumes
// it cancels the consumer, and subscribing again fails with 404 NOT_FOUND; the connection
// declares its topology again, and the consumer gets the messages published from then on.
func TestConsumerDeclaresADeletedQueueAgain(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	seen := newCounter()
	cons := NewConsumer(c, "c", 10, func(_ context.Context, d Delivery) error {
		seen.add(d.MessageID)
		return nil
	})
	cons.Start()
	t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	publish(t, c, 0)
	testutil.Eventually(t, 10*time.Second, "the first delivery", func() bool { return seen.distinct() == 1 })
	admin := testenv.AdminChannel(t, cfg)
	if _, err := admin.QueueDelete(c.Topology().QueueName("c"), false, false, false); err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(c)
	i := 0
	// Until the queue is back, messages are returned as unroutable.
	testutil.Eventually(t, 15*time.Second, "a delivery after the queue was deleted", func() bool {
		i++
		_ = p.Publish(context.Background(), message(testKey, i))
		time.Sleep(50 * time.Millisecond)
		return seen.distinct() > 1
	})
}

// TestConsumerAsksForADayToAcknowledge: a subscription asks for a consumer timeout of a day,
// so that a worker keeping its messages through a database outage does not have them
// redelivered, and counted toward the delivery limit, every 30 minutes (the broker's default).
func TestConsumerAsksForADayToAcknowledge(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	cons := NewConsumer(c, "c", 10, func(context.Context, Delivery) error { return nil })
	cons.Start()
	t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	queue := c.Topology().QueueName("c")
	var line string
	testutil.Eventually(t, 10*time.Second, "the consumer listed with its arguments", func() bool {
		out, err := testenv.Rabbitmqctl("list_consumers", "-q", "-p", cfg.VHost, "queue_name", "arguments")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, queue+"\t") {
				line = l
				return true
			}
		}
		return false
	})
	if !regexp.MustCompile(`"x-consumer-timeout",(long,)?86400000\}`).MatchString(line) {
		t.Errorf("consumer %q, want x-consumer-timeout 86400000 ms", line)
	}
}
