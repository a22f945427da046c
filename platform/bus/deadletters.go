package bus

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
)

// deadLetterInterval is how often a consuming process counts the messages in the dead-letter
// queues of its queues.
const deadLetterInterval = time.Minute

var deadLetters = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "orderflow_dead_letter_messages",
	Help: "Messages in the dead-letter queue of each consumed queue, as last counted (every minute).",
}, []string{"queue"})

// watchDeadLetters counts the messages in the dead-letter queues of queues, at once and then
// every interval until ctx ends: it sets orderflow_dead_letter_messages, and logs a warning
// for a queue that holds messages at the first count (in every process that starts) and
// whenever a count has grown. A consumer logs each message it rejects, but the broker
// dead-letters a message by itself once its deliveries reach the delivery limit however they
// ended, also when the worker or its connection went away while a handler ran (a broker or
// worker restarted that often): this is where such messages show in the logs.
func watchDeadLetters(ctx context.Context, c *Conn, queues []string, interval time.Duration) {
	seen := map[string]int{}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		countDeadLetters(ctx, c, queues, seen)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// countDeadLetters counts the messages in the dead-letter queue of each of queues, against
// the counts in seen, which it updates. While the broker is away it waits for it, until ctx
// ends; the connection's own log tells of the outage.
func countDeadLetters(ctx context.Context, c *Conn, queues []string, seen map[string]int) {
	var ch *amqp.Channel
	defer func() {
		if ch != nil {
			ch.Close()
		}
	}()
	for _, q := range queues {
		if ch == nil {
			var err error
			if ch, err = c.channel(ctx); err != nil {
				return
			}
		}
		dlq := DeadLetterQueue(q)
		st, err := ch.QueueDeclarePassive(dlq,
			true,  // durable
			false, // auto-delete
			false, // exclusive
			false, // no-wait
			nil)
		if err != nil { // the broker closed the channel: the next queue gets another
			c.log.WarnContext(ctx, "cannot count the messages in a dead-letter queue", "queue", dlq, "error", err)
			ch = nil
			continue
		}
		deadLetters.WithLabelValues(dlq).Set(float64(st.Messages))
		if added := st.Messages - seen[dlq]; added > 0 {
			c.log.WarnContext(ctx, "messages in a dead-letter queue: their events were not handled; see the README, Dead letters",
				slog.String("queue", dlq), slog.Int("messages", st.Messages), slog.Int("added", added))
		}
		seen[dlq] = st.Messages
	}
}
