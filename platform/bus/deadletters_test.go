package bus

import (
	"context"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// TestDeadLettersAreCountedAndLogged: messages that reach a dead-letter queue, by whatever
// path (here put there directly, as the broker does once a message's deliveries reach the
// limit), set orderflow_dead_letter_messages and are logged once each time the count grows.
func TestDeadLettersAreCountedAndLogged(t *testing.T) {
	t.Parallel()
	const consumer = "dead-letters"
	rec := &logRecorder{}
	cfg := rabbitConfig(t)
	c := startConnLogging(t, cfg, Options{Queues: []Queue{{Consumer: consumer, RoutingKey: testKey}}}, rec.logger())
	queue := c.Topology().QueueName(consumer)
	dlq := DeadLetterQueue(queue)
	ch := testenv.AdminChannel(t, cfg)
	deadLetter := func() {
		t.Helper()
		if err := ch.PublishWithContext(context.Background(), "", dlq, false, false, amqp.Publishing{Body: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	const warning = "messages in a dead-letter queue"
	deadLetter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchDeadLetters(ctx, c, []string{queue}, 50*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()

	gauge := deadLetters.WithLabelValues(dlq)
	testutil.Eventually(t, 10*time.Second, "one dead letter counted", func() bool { return promtest.ToFloat64(gauge) == 1 })
	deadLetter()
	deadLetter()
	testutil.Eventually(t, 10*time.Second, "three dead letters counted", func() bool { return promtest.ToFloat64(gauge) == 3 })
	// The gauge is set before the warning is logged.
	testutil.Eventually(t, 10*time.Second, "the third dead letter logged", func() bool {
		logged := rec.find(warning)
		return len(logged) > 0 && attr(logged[len(logged)-1], "messages").Int64() == 3
	})
	time.Sleep(200 * time.Millisecond) // counts that find nothing new log nothing

	// One warning when the first letter was found, and one or two for the next two.
	logged := rec.find(warning)
	var added int64
	for i, got := range logged {
		if attr(got, "queue").String() != dlq || attr(got, "added").Int64() <= 0 {
			t.Errorf("warning %d: queue %v, added %v", i+1, attr(got, "queue"), attr(got, "added"))
		}
		added += attr(got, "added").Int64()
	}
	if len(logged) < 2 || len(logged) > 3 || added != 3 ||
		attr(logged[0], "messages").Int64() != 1 || attr(logged[len(logged)-1], "messages").Int64() != 3 {
		t.Errorf("%d warnings adding %d letters, want 2 or 3 adding 3, from 1 message to 3", len(logged), added)
	}
}
