package bus

import (
	"context"
	"testing"
	"time"
)

// publishAll publishes msgs in batches of 20, retrying every failed message until the broker
// confirms it, as the outbox relay does; after the batch at index disruptAt it calls disrupt.
func publishAll(t *testing.T, p *Publisher, msgs []Message, disruptAt int, disrupt func()) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for start := 0; start < len(msgs); start += 20 {
		if start == disruptAt {
			disrupt()
		}
		pending := msgs[start:min(start+20, len(msgs))]
		for len(pending) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("publishing did not resume: %d messages left in a batch", len(pending))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			errs := p.PublishBatch(ctx, pending)
			cancel()
			var failed []Message
			for i, err := range errs {
				if err != nil {
					failed = append(failed, pending[i])
				}
			}
			pending = failed
		}
	}
}

// runThroughDisruption publishes and consumes 400 messages, calling disrupt halfway, and
// checks that every confirmed message is consumed and acked.
func runThroughDisruption(t *testing.T, disrupt func(c *Conn)) {
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	seen := newCounter()
	cons := NewConsumer(c, "c", 50, func(ctx context.Context, d Delivery) error {
		time.Sleep(2 * time.Millisecond)
		seen.add(d.MessageID)
		return nil
	})
	cons.Start()
	defer cons.Stop(context.Background())

	msgs := make([]Message, 400)
	for i := range msgs {
		msgs[i] = message(testKey, i)
	}
	publishAll(t, NewPublisher(c), msgs, 200, func() { disrupt(c) })
	eventually(t, 60*time.Second, "every confirmed message consumed", func() bool { return seen.distinct() == len(msgs) })
	ch := adminChannel(t, cfg)
	eventually(t, 30*time.Second, "an empty queue", func() bool {
		q, err := ch.QueueDeclarePassive(c.Topology().QueueName("c"), true, false, false, false, nil)
		return err == nil && q.Messages == 0
	})
	if err := c.Check(context.Background()); err != nil {
		t.Errorf("connection not healthy at the end: %v", err)
	}
}

// TestReconnectAfterConnectionsClosed closes the test's connection on the broker (what
// `rabbitmqctl close_all_connections` does to every connection) while messages flow.
func TestReconnectAfterConnectionsClosed(t *testing.T) {
	t.Parallel()
	runThroughDisruption(t, func(c *Conn) {
		if n := closeConnections(t, c.name); n != 1 {
			t.Fatalf("closed %d connections named %s, want 1", n, c.name)
		}
	})
}
