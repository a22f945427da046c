package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
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
	testutil.Eventually(t, 60*time.Second, "every confirmed message consumed", func() bool { return seen.distinct() == len(msgs) })
	ch := testenv.AdminChannel(t, cfg)
	testutil.Eventually(t, 30*time.Second, "an empty queue", func() bool {
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
		if n := testenv.CloseConnections(t, c.name); n != 1 {
			t.Fatalf("closed %d connections named %s, want 1", n, c.name)
		}
	})
}

// TestAcksAfterReconnectAckNothingElse: handlers that were running when the connection
// dropped, and ignore the interruption, finish afterwards. Their acks must not settle other
// messages on the new channel, where delivery tags start again at 1 (amqp091-go's own
// recovery reuses the channel and does exactly that, losing messages). The old handlers
// finish while the new channel's first ten deliveries, with the same tags, are held: those
// stay unacknowledged, so the broker sends no more until they are handled. Every message is
// handled and the queue ends empty.
func TestAcksAfterReconnectAckNothingElse(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	logs := &logRecorder{}
	c := startConnLogging(t, cfg, Options{Queues: testQueues()}, logs.logger())
	handled := newCounter()
	oldGate, newGate := make(chan struct{}), make(chan struct{})
	var blocked, oldDone sync.WaitGroup
	blocked.Add(10)
	oldDone.Add(10)
	var started atomic.Int64
	cons := NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		if n := started.Add(1); n <= 10 {
			// The first ten deliveries (before the drop) wait for oldGate.
			defer oldDone.Done()
			blocked.Done()
			<-oldGate
		} else {
			<-newGate
		}
		handled.add(d.MessageID)
		return nil
	})
	cons.interruptGrace = 100 * time.Millisecond // resubscribe without waiting for them
	cons.Start()
	msgs := make([]Message, 20)
	for i := range msgs {
		msgs[i] = message(testKey, i)
	}
	for _, err := range NewPublisher(c).PublishBatch(context.Background(), msgs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	blocked.Wait() // ten handlers hold the whole prefetch
	if n := testenv.CloseConnections(t, c.name); n != 1 {
		t.Fatalf("closed %d connections, want 1", n)
	}
	// The new channel delivers ten, tagged 1 to 10, which wait for newGate.
	testutil.Eventually(t, 30*time.Second, "ten deliveries on the new channel", func() bool { return started.Load() == 20 })
	close(oldGate) // the old handlers finish now; their acks fail on the dead channel
	oldDone.Wait()
	testutil.Eventually(t, 10*time.Second, "the old handlers' acks refused", func() bool {
		return len(logs.find("settle delivery on a closed channel")) == 10
	})
	// An ack that settled a new delivery would free its place in the prefetch, and the broker
	// would send another at once.
	time.Sleep(300 * time.Millisecond)
	ch := testenv.AdminChannel(t, cfg)
	if n, ready := started.Load(), queueLength(t, ch, c.Topology().QueueName("c")); n != 20 || ready != 10 {
		t.Fatalf("after the old handlers' acks: %d deliveries, %d messages ready; want 20 and 10 (the new deliveries held, unacknowledged)", n, ready)
	}
	close(newGate)
	testutil.Eventually(t, 30*time.Second, "all 20 handled", func() bool { return handled.distinct() == 20 })
	if err := cons.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "an empty queue", func() bool { return queueLength(t, ch, c.Topology().QueueName("c")) == 0 })
}

// TestConsumerBackoffRestartsAfterASubscription drops the connection again and again, each
// time after the consumer has resubscribed and handled a message: every drop ends a working
// subscription, so each resubscription waits only the shortest back-off, however many drops
// came before.
func TestConsumerBackoffRestartsAfterASubscription(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	logs := &logRecorder{}
	c := startConnLogging(t, cfg, Options{Queues: testQueues()}, logs.logger())
	seen := newCounter()
	cons := NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		seen.add(d.MessageID)
		return nil
	})
	cons.Start()
	defer cons.Stop(context.Background())
	p := NewPublisher(c)

	const drops = 8 // more than it takes the doubling back-off to reach its cap
	for i := range drops + 1 {
		if i > 0 {
			conn, _ := c.current()
			if conn == nil {
				t.Fatal("no connection to drop")
			}
			_ = conn.Close() // the consumer's channel closes with it
		}
		m := message(testKey, i)
		if err := p.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "the message handled after drop "+m.ID, func() bool { return seen.get(m.ID) > 0 })
	}
	resubscribed := logs.find("consumer interrupted, resubscribing")
	if len(resubscribed) != drops {
		t.Fatalf("%d resubscriptions logged, want %d", len(resubscribed), drops)
	}
	for i, rec := range resubscribed {
		if d := attr(rec, "retry_in").Duration(); d != minBackoff {
			t.Errorf("resubscription %d waited %v, want %v", i+1, d, minBackoff)
		}
	}
}

// TestChannelLossInterruptsHandlers: when the connection drops, the handlers of its channel
// are interrupted, since they could no longer ack, and the broker's redelivery of their
// message reaches a new handler only once the old one has returned.
func TestChannelLossInterruptsHandlers(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	logs := &logRecorder{}
	c := startConnLogging(t, cfg, Options{Queues: testQueues()}, logs.logger())
	deliveries := newCounter()
	var running, overlaps atomic.Int64
	interrupted := make(chan error, 1) // the cause of the first handler's context
	cons := NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer running.Add(-1)
		if deliveries.add(d.MessageID) == 1 {
			// The first delivery blocks, as a payment does, until its context ends.
			<-ctx.Done()
			interrupted <- context.Cause(ctx)
			time.Sleep(200 * time.Millisecond) // winding down takes a while
			return fmt.Errorf("payment interrupted: %w", context.Cause(ctx))
		}
		if !d.Redelivered {
			t.Errorf("delivery %d of %s not flagged redelivered", deliveries.get(d.MessageID), d.MessageID)
		}
		return nil
	})
	cons.Start()
	defer func() {
		// Bounded, so that a handler still blocked after a failure is aborted.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cons.Stop(ctx)
	}()
	publish(t, c, 1)
	testutil.Eventually(t, 10*time.Second, "the handler to start", func() bool { return deliveries.get("m-1") == 1 })

	if n := testenv.CloseConnections(t, c.name); n != 1 {
		t.Fatalf("closed %d connections, want 1", n)
	}
	select {
	case cause := <-interrupted:
		if !errors.Is(cause, ErrChannelClosed) {
			t.Errorf("the handler's context ended with %v, want ErrChannelClosed", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end when its connection dropped")
	}
	testutil.Eventually(t, 10*time.Second, "the message delivered again", func() bool { return deliveries.get("m-1") == 2 })
	testutil.Eventually(t, 30*time.Second, "the handler to return", func() bool { return running.Load() == 0 })
	if err := cons.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Once the consumer's channel is closed, an unacked message would be back in the queue.
	ch := testenv.AdminChannel(t, cfg)
	testutil.Eventually(t, 30*time.Second, "an empty queue without consumers", func() bool {
		q, err := ch.QueueDeclarePassive(c.Topology().QueueName("c"), true, false, false, false, nil)
		return err == nil && q.Messages == 0 && q.Consumers == 0
	})
	if n := deliveries.get("m-1"); n != 2 {
		t.Errorf("message delivered %d times, want 2", n)
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("two handlers of the message ran at once %d times", n)
	}
	if n := len(logs.find("handler failed")); n != 0 {
		t.Errorf("the interrupted handler was logged %d times as failed", n)
	}
	if n := len(logs.find("handler interrupted: its channel closed")); n != 1 {
		t.Errorf("%d interrupted handlers logged, want 1", n)
	}
}
