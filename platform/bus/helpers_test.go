package bus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"orderflow/configuration"
	"orderflow/internal/testenv"
)

// testLogger discards logs unless ORDERFLOW_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("ORDERFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func rabbitConfig(t *testing.T) configuration.RabbitMQ {
	t.Helper()
	cfg := configuration.Defaults().RabbitMQ
	cfg.Host = "127.0.0.1"
	cfg.Exchange = testenv.Exchange(t)
	return cfg
}

// startConn starts a Conn on its own exchange (named after cfg.Exchange, also the connection
// name), waits until it is ready, and deletes its exchanges and queues when the test ends.
func startConn(t *testing.T, cfg configuration.RabbitMQ, opts Options) *Conn {
	t.Helper()
	return startConnLogging(t, cfg, opts, testLogger())
}

// startConnLogging is startConn with the Conn (and its consumers) logging to log.
func startConnLogging(t *testing.T, cfg configuration.RabbitMQ, opts Options, log *slog.Logger) *Conn {
	t.Helper()
	if opts.Name == "" {
		opts.Name = cfg.Exchange
	}
	c := NewConn(cfg, log, opts)
	c.Start()
	deleteAtCleanup(t, cfg, c.Topology())
	t.Cleanup(func() { _ = c.Close() }) // before the deletion: cleanups run last first
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// deleteAtCleanup deletes the topology's exchanges and queues when the test ends.
func deleteAtCleanup(t *testing.T, cfg configuration.RabbitMQ, top Topology) {
	t.Helper()
	t.Cleanup(func() {
		ch := testenv.AdminChannel(t, cfg)
		exchanges, queues := top.Names()
		for _, q := range queues {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				t.Errorf("delete queue %s: %v", q, err)
				return
			}
		}
		for _, e := range exchanges {
			if err := ch.ExchangeDelete(e, false, false); err != nil {
				t.Errorf("delete exchange %s: %v", e, err)
				return
			}
		}
	})
}

// queueLength returns the number of ready messages in queue.
func queueLength(t *testing.T, ch *amqp.Channel, queue string) int {
	t.Helper()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

func message(key string, i int) Message {
	return Message{
		ID: fmt.Sprintf("m-%d", i), Type: "test.v1", RoutingKey: key, ContentType: "application/json",
		Body: fmt.Appendf(nil, `{"n":%d}`, i), Time: time.Now().Truncate(time.Second),
	}
}

// publish publishes message(testKey, i) through c, failing t if it cannot.
func publish(t *testing.T, c *Conn, i int) {
	t.Helper()
	if err := NewPublisher(c).Publish(context.Background(), message(testKey, i)); err != nil {
		t.Fatal(err)
	}
}

// stopPastDeadline stops cons with a deadline of d that its handlers outlast, and requires
// Stop to report it.
func stopPastDeadline(t *testing.T, cons *Consumer, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := cons.Stop(ctx); err == nil {
		t.Error("Stop past its deadline reported no error")
	}
}

// counter records how often each message id was seen.
type counter struct {
	mu   sync.Mutex
	seen map[string]int
}

func newCounter() *counter { return &counter{seen: map[string]int{}} }

func (c *counter) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[id]++
	return c.seen[id]
}

func (c *counter) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func (c *counter) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id]
}

// TestTestenvDeletesWhatProcessesDeclare keeps testenv's clean-up list equal to the
// topology the processes declare, so tests leave no queues behind.
func TestTestenvDeletesWhatProcessesDeclare(t *testing.T) {
	exchanges, queues := NewTopology("x.events", DefaultDeliveryLimit, SystemQueues()).Names()
	gotExchanges, gotQueues := testenv.BrokerNames("x.events")
	slices.Sort(exchanges)
	slices.Sort(queues)
	slices.Sort(gotExchanges)
	slices.Sort(gotQueues)
	if !slices.Equal(exchanges, gotExchanges) || !slices.Equal(queues, gotQueues) {
		t.Errorf("testenv deletes %v %v, processes declare %v %v", gotExchanges, gotQueues, exchanges, queues)
	}
}

// logRecorder is a slog.Handler that keeps every record, for tests that check what was
// logged; it also passes them to testLogger.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) logger() *slog.Logger { return slog.New(r) }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.records = append(r.records, rec.Clone())
	r.mu.Unlock()
	return testLogger().Handler().Handle(ctx, rec)
}

// The attributes that loggers derived with With add are not kept: tests look at a record's
// own attributes.
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// find returns the records whose message starts with prefix.
func (r *logRecorder) find(prefix string) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.records {
		if strings.HasPrefix(rec.Message, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

// attr returns the value of the attribute key of rec.
func attr(rec slog.Record, key string) slog.Value {
	var v slog.Value
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}
