package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

const testKey = "order.created"

func testQueues() []Queue { return []Queue{{Consumer: "c", RoutingKey: testKey}} }

func TestTopologyNames(t *testing.T) {
	t.Parallel()
	top := NewTopology("orderflow.events", 0, nil)
	if got := top.QueueName(ConsumerOrderCreated); got != "orderflow.events.order-created" {
		t.Errorf("queue %s", got)
	}
	if got := top.DeadLetterExchange(); got != "orderflow.events.dlx" {
		t.Errorf("dead-letter exchange %s", got)
	}
	if got := DeadLetterQueue(top.QueueName(ConsumerOrderExpired)); got != "orderflow.events.order-expired.dlq" {
		t.Errorf("dead-letter queue %s", got)
	}
	if top.DeliveryLimit != DefaultDeliveryLimit {
		t.Errorf("delivery limit %d, want the default %d", top.DeliveryLimit, DefaultDeliveryLimit)
	}
	if !reflect.DeepEqual(top.Queues, SystemQueues()) {
		t.Errorf("queues %+v, want SystemQueues() %+v", top.Queues, SystemQueues())
	}
}

func TestSplitPrefetch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefetch, limit int
		want            []int
	}{
		{0, 2000, []int{1}},
		{1000, 2000, []int{1000}},
		{2000, 2000, []int{2000}},
		{2001, 2000, []int{1001, 1000}},
		{5000, 2000, []int{1667, 1667, 1666}},
	}
	for _, tt := range tests {
		if got := splitPrefetch(tt.prefetch, tt.limit); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitPrefetch(%d, %d) = %v, want %v", tt.prefetch, tt.limit, got, tt.want)
		}
	}
}

// TestTopologyIsIdempotent declares the system topology from two connections (as the API and
// the worker do) and checks the queues' arguments.
func TestTopologyIsIdempotent(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{})
	startConn(t, cfg, Options{Name: cfg.Exchange + ".second"})
	ch := testenv.AdminChannel(t, cfg)
	for _, q := range SystemQueues() {
		name := c.Topology().QueueName(q.Consumer)
		for _, n := range []string{name, DeadLetterQueue(name)} {
			if _, err := ch.QueueDeclarePassive(n, true, false, false, false, nil); err != nil {
				t.Fatalf("queue %s: %v", n, err)
			}
		}
	}
	// Redeclaring with the same arguments succeeds; with another delivery limit RabbitMQ
	// refuses, which proves the arguments are set.
	name := c.Topology().QueueName(ConsumerOrderCreated)
	args := amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": int32(DefaultDeliveryLimit + 1)}
	if _, err := ch.QueueDeclare(name, true, false, false, false, args); err == nil {
		t.Error("queue accepted another x-delivery-limit")
	}
}

// TestPublishProperties checks what a consumer sees of a published message.
func TestPublishProperties(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	p := NewPublisher(c)
	m := message(testKey, 1)
	m.Headers = map[string]string{"x-request-id": "r-1"}
	if err := p.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	ch := testenv.AdminChannel(t, cfg)
	d, ok, err := ch.Get(c.Topology().QueueName("c"), true)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if d.MessageId != m.ID || d.Type != m.Type || d.ContentType != m.ContentType || string(d.Body) != string(m.Body) ||
		d.DeliveryMode != amqp.Persistent || !d.Timestamp.Equal(m.Time) || d.RoutingKey != testKey || d.Headers["x-request-id"] != "r-1" {
		t.Errorf("delivery %+v", d)
	}
}

func TestPublishBatch(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	p := NewPublisher(c)
	msgs := make([]Message, 2000)
	for i := range msgs {
		msgs[i] = message(testKey, i)
	}
	for i, err := range p.PublishBatch(context.Background(), msgs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	ch := testenv.AdminChannel(t, cfg)
	if n := queueLength(t, ch, c.Topology().QueueName("c")); n != len(msgs) {
		t.Errorf("%d messages in the queue, want %d", n, len(msgs))
	}
}

// TestPublishUnroutable checks that a returned message fails and the others of its batch
// do not.
func TestPublishUnroutable(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	p := NewPublisher(c)
	msgs := []Message{message(testKey, 0), message("nowhere", 1), message(testKey, 2)}
	errs := p.PublishBatch(context.Background(), msgs)
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], ErrReturned) {
		t.Fatalf("errors %v", errs)
	}
	// The channel stays usable and its returns do not leak into the next batch.
	if err := p.Publish(context.Background(), message(testKey, 3)); err != nil {
		t.Fatal(err)
	}
}

// TestPublishReturnedThenChannelClosed: the broker closes the channel over a message
// larger than its max_message_size (128 MiB unless configured otherwise). The message
// returned before it still fails as returned, not confirmed, the refused one fails as
// refused with the broker's reason, and the ones after it, whether written before the close
// or refused by the closed channel, as not taken. Not parallel: it sends 256 MiB.
func TestPublishReturnedThenChannelClosed(t *testing.T) {
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	p := NewPublisher(c)
	large := make([]byte, 128<<20+1)
	msgs := []Message{message(testKey, 0), message("nowhere", 1), message(testKey, 2), message(testKey, 3), message(testKey, 4)}
	msgs[2].Body, msgs[3].Body = large, large
	errs := p.PublishBatch(context.Background(), msgs)
	if errs[0] != nil {
		t.Errorf("confirmed message: %v", errs[0])
	}
	if !errors.Is(errs[1], ErrReturned) {
		t.Errorf("returned message: %v, want ErrReturned", errs[1])
	}
	if !errors.Is(errs[2], ErrRefused) || !strings.Contains(errs[2].Error(), "PRECONDITION_FAILED") {
		t.Errorf("message over the broker's limit: %v, want ErrRefused with the broker's reason", errs[2])
	}
	for i, err := range errs[3:] {
		if err == nil || errors.Is(err, ErrReturned) || errors.Is(err, ErrRefused) || errors.Is(err, ErrNacked) {
			t.Errorf("message %d, after the refused one: %v, want not taken", i+3, err)
		}
	}
	// A new channel takes the next batch.
	if err := p.Publish(context.Background(), message(testKey, 5)); err != nil {
		t.Fatal(err)
	}
	if n := queueLength(t, testenv.AdminChannel(t, cfg), c.Topology().QueueName("c")); n != 2 {
		t.Errorf("%d messages in the queue, want 2 (m-0 and m-5)", n)
	}
}

func TestPublishConcurrently(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	p := NewPublisher(c)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if err := p.Publish(context.Background(), message(testKey, g*1000+i)); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d publishes failed", failed.Load())
	}
	if n := queueLength(t, testenv.AdminChannel(t, cfg), c.Topology().QueueName("c")); n != 400 {
		t.Errorf("%d messages in the queue, want 400", n)
	}
}

func TestPublishWaitIsBoundedByContext(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	cfg.Port = 1 // nothing listens: the connection never comes up
	c := NewConn(cfg, testLogger(), Options{})
	c.Start()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := NewPublisher(c).Publish(ctx, message(testKey, 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if c.Check(context.Background()) == nil {
		t.Error("Check reports a connection that never came up as healthy")
	}
}

// connThroughProxy starts a connection to the test broker through a proxy that the test can
// silence, and deletes its topology at the end of the test, directly.
func connThroughProxy(t *testing.T) (*Conn, *testutil.Proxy) {
	t.Helper()
	cfg := rabbitConfig(t)
	proxy := testutil.StartProxy(t, fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	direct := cfg
	cfg.Port = proxy.Port()
	c := NewConn(cfg, testLogger(), Options{Name: cfg.Exchange, Queues: testQueues()})
	c.Start()
	deleteAtCleanup(t, direct, c.Topology()) // not through the proxy, silent by then
	return c, proxy
}

// TestPublishOnASilentBrokerIsBoundedByContext: a publish whose confirm a broker that stopped
// answering never sends returns when its context ends, instead of waiting for the
// heartbeats to time out while it closes its channel.
func TestPublishOnASilentBrokerIsBoundedByContext(t *testing.T) {
	t.Parallel()
	c, proxy := connThroughProxy(t)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := NewPublisher(c)
	if err := p.Publish(ctx, message(testKey, 1)); err != nil {
		t.Fatal(err)
	}
	proxy.Silence()

	// The first publish waits for its confirm; the second for a new channel, since the first
	// gave its own up.
	for i := 2; i <= 3; i++ {
		pctx, cancelPublish := context.WithTimeout(context.Background(), 500*time.Millisecond)
		begin := time.Now()
		err := p.Publish(pctx, message(testKey, i))
		cancelPublish()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("publish %d on a silent broker: %v, want a deadline error", i, err)
		}
		// Under dialTimeout (5 s), a wait that must not happen either, with room for a slow
		// machine.
		if took := time.Since(begin); took > 4*time.Second {
			t.Errorf("publish %d took %v on a silent broker, past its 500ms deadline", i, took)
		}
	}
}

func TestConsumeAcksAndStops(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	seen := newCounter()
	var got Delivery
	var mu sync.Mutex
	cons := NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		mu.Lock()
		got = d
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		seen.add(d.MessageID)
		return nil
	})
	cons.Start()
	p := NewPublisher(c)
	for _, err := range p.PublishBatch(context.Background(), []Message{message(testKey, 1), message(testKey, 2)}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "two deliveries", func() bool { return seen.distinct() == 2 })
	if err := cons.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if got.Type != "test.v1" || got.RoutingKey != testKey || got.Redelivered {
		t.Errorf("delivery %+v", got)
	}
	mu.Unlock()
	// Acked messages are gone; nothing is delivered after Stop.
	if err := p.Publish(context.Background(), message(testKey, 3)); err != nil {
		t.Fatal(err)
	}
	ch := testenv.AdminChannel(t, cfg)
	testutil.Eventually(t, 30*time.Second, "the queue to hold only the message sent after Stop", func() bool {
		q, err := ch.QueueDeclarePassive(c.Topology().QueueName("c"), true, false, false, false, nil)
		return err == nil && q.Messages == 1 && q.Consumers == 0
	})
	if seen.get("m-3") != 0 || seen.get("m-1") != 1 {
		t.Errorf("seen %v", seen.seen)
	}
}

// TestStopWaitsForHandlers: Stop lets a handler in flight finish and ack; with an expired
// deadline it cancels the handler's context instead.
func TestStopWaitsForHandlers(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	started := make(chan struct{}, 2)
	var finished, aborted atomic.Int64
	cons := NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		started <- struct{}{}
		if d.MessageID == "m-2" {
			<-ctx.Done()
			aborted.Add(1)
			return ctx.Err()
		}
		time.Sleep(300 * time.Millisecond)
		finished.Add(1)
		return nil
	})
	cons.Start()
	publish(t, c, 1)
	<-started
	if err := cons.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if finished.Load() != 1 {
		t.Fatal("Stop returned before the handler finished")
	}

	cons = NewConsumer(c, "c", 10, cons.handler)
	cons.Start()
	publish(t, c, 2)
	<-started
	stopPastDeadline(t, cons, 100*time.Millisecond)
	if aborted.Load() != 1 {
		t.Error("the handler's context was not cancelled")
	}

	// A deadline that has passed before Stop: the handlers (of message 3, and of message 2
	// again, which the stop above requeued) are cancelled and waited for all the same.
	var running atomic.Int64
	cons = NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		running.Add(1)
		defer running.Add(-1)
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond) // a handler's cleanup after its context ends
		return ctx.Err()
	})
	cons.Start()
	publish(t, c, 3)
	<-started
	past, cancelPast := context.WithCancel(context.Background())
	cancelPast()
	err := cons.Stop(past)
	if err == nil {
		t.Error("Stop past its deadline reported no error")
	}
	if n := running.Load(); n != 0 {
		t.Errorf("Stop with a deadline already passed returned (%v) before its %d cancelled handlers did", err, n)
	}

	// With no handler in flight, such a Stop does not report one.
	if _, err := testenv.AdminChannel(t, cfg).QueuePurge(c.Topology().QueueName("c"), false); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		cons = NewConsumer(c, "c", 10, func(context.Context, Delivery) error { return nil })
		cons.Start()
		if err := cons.Stop(past); err != nil && strings.Contains(err.Error(), "handlers still running") {
			t.Fatalf("Stop with no handler in flight: %v", err)
		}
	}
}

// TestStopOnASilentBroker: a consumer and its connection stop within their deadlines when
// the broker stopped answering without closing the connection (a network partition), instead
// of waiting 30 s for the heartbeats to time out.
func TestStopOnASilentBroker(t *testing.T) {
	t.Parallel()
	c, proxy := connThroughProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	cons := NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		return nil
	})
	cons.Start()
	publish(t, c, 1)
	<-started
	proxy.Silence()

	stop, cancelStop := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelStop()
	begin := time.Now()
	if err := cons.Stop(stop); err != nil {
		t.Errorf("stop: %v", err)
	}
	// The bounds are under dialTimeout (5 s), a wait that must not happen either, with room
	// for a slow machine.
	if took := time.Since(begin); took > 2*time.Second+2*time.Second {
		t.Errorf("Stop took %v on a silent broker, well past its 2s deadline", took)
	}
	begin = time.Now()
	_ = c.Close()
	if took := time.Since(begin); took > closeTimeout+2*time.Second {
		t.Errorf("Close took %v on a silent broker, want at most closeTimeout (%v)", took, closeTimeout)
	}
}

// TestCloseWhileConnectingToASilentBroker: Close keeps to closeTimeout while a connection
// attempt waits for a broker that stopped answering, instead of waiting for the attempt's
// own timeouts.
func TestCloseWhileConnectingToASilentBroker(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	proxy := testutil.StartProxy(t, fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	proxy.Silence()
	cfg.Port = proxy.Port()
	c := NewConn(cfg, testLogger(), Options{Name: cfg.Exchange, Queues: testQueues()})
	c.Start()
	// The attempt has connected, and waits for the broker's answer.
	testutil.Eventually(t, 30*time.Second, "a connection attempt", func() bool { return proxy.Connections() > 0 })
	begin := time.Now()
	_ = c.Close()
	// Kept under dialTimeout (5 s), the attempt's own handshake deadline, which is what
	// Close must not wait for; closing the socket takes milliseconds.
	if took := time.Since(begin); took > closeTimeout+time.Second {
		t.Errorf("Close took %v while connecting to a silent broker, want at most closeTimeout (%v)", took, closeTimeout)
	}
	if err := c.Check(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Check after Close = %v, want ErrClosed", err)
	}
}

// TestConsumerConcurrency: with prefetch N, N slow handlers run at once, and no more.
func TestConsumerConcurrency(t *testing.T) {
	t.Parallel()
	for _, n := range []int{10, 2500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			cfg := rabbitConfig(t)
			c := startConn(t, cfg, Options{Queues: testQueues()})
			var active, peak atomic.Int64
			release := make(chan struct{})
			var once sync.Once
			cons := NewConsumer(c, "c", n, func(ctx context.Context, d Delivery) error {
				a := active.Add(1)
				defer active.Add(-1)
				for {
					p := peak.Load()
					if a <= p || peak.CompareAndSwap(p, a) {
						break
					}
				}
				if a == int64(n) {
					once.Do(func() { close(release) })
				}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			})
			cons.Start()
			defer cons.Stop(context.Background())
			msgs := make([]Message, n+n/2)
			for i := range msgs {
				msgs[i] = message(testKey, i)
			}
			for _, err := range NewPublisher(c).PublishBatch(context.Background(), msgs) {
				if err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-release:
			case <-time.After(20 * time.Second):
				t.Fatalf("only %d handlers ran at once, want %d", peak.Load(), n)
			}
			testutil.Eventually(t, 20*time.Second, "all messages handled", func() bool {
				return queueLength(t, testenv.AdminChannel(t, cfg), c.Topology().QueueName("c")) == 0 && active.Load() == 0
			})
			if p := peak.Load(); p != int64(n) {
				t.Errorf("peak concurrency %d, want %d", p, n)
			}
		})
	}
}

// TestPoisonMessage: a message whose handler always fails transiently is dead-lettered after
// the delivery limit, a permanently failing one at once, one whose handler panics at once
// too, or after its wait (After), without ending the process, and none blocks the others.
func TestPoisonMessage(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	const limit = 2
	c := startConn(t, cfg, Options{Queues: testQueues(), DeliveryLimit: limit})
	seen := newCounter()
	cons := NewConsumer(c, "c", 5, func(ctx context.Context, d Delivery) error {
		seen.add(d.MessageID)
		switch string(d.Body) {
		case "poison":
			return errors.New("database unavailable")
		case "malformed":
			return Permanent(errors.New("not json"))
		case "panics":
			panic("a handler's defect")
		case "panics-later":
			return After(0, func(context.Context) error { panic("a handler's defect, after its wait") })
		}
		return nil
	})
	cons.requeueDelay = 50 * time.Millisecond
	cons.Start()
	defer cons.Stop(context.Background())

	poison, malformed, panics, panicsLater := message(testKey, 1000), message(testKey, 1001), message(testKey, 1002), message(testKey, 1003)
	poison.ID, poison.Body = "poison", []byte("poison")
	malformed.ID, malformed.Body = "malformed", []byte("malformed")
	panics.ID, panics.Body = "panics", []byte("panics")
	panicsLater.ID, panicsLater.Body = "panics-later", []byte("panics-later")
	msgs := []Message{poison, malformed, panics, panicsLater}
	for i := range 50 {
		msgs = append(msgs, message(testKey, i))
	}
	for _, err := range NewPublisher(c).PublishBatch(context.Background(), msgs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 20*time.Second, "every good message handled", func() bool { return seen.distinct() == 54 })

	dlq := DeadLetterQueue(c.Topology().QueueName("c"))
	ch := testenv.AdminChannel(t, cfg)
	reasons := map[string]any{}
	testutil.Eventually(t, 20*time.Second, "four dead letters", func() bool {
		d, ok, err := ch.Get(dlq, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			reasons[d.MessageId] = d.Headers["x-first-death-reason"]
		}
		return len(reasons) == 4
	})
	if reasons["poison"] != "delivery_limit" || reasons["malformed"] != "rejected" || reasons["panics"] != "rejected" || reasons["panics-later"] != "rejected" {
		t.Errorf("dead-letter reasons %v", reasons)
	}
	if n := seen.get("poison"); n != limit+1 {
		t.Errorf("poison message delivered %d times, want %d", n, limit+1)
	}
	for _, id := range []string{"malformed", "panics", "panics-later"} {
		if n := seen.get(id); n != 1 {
			t.Errorf("%s message delivered %d times, want 1", id, n)
		}
	}
}

// TestDeliveryLimitIsLogged: the last failure of a message that keeps failing, after which
// the broker dead-letters it instead of delivering it again, is logged as such, with the
// message id, so that the log of a message found in the dead-letter queue does not end with
// its being requeued.
func TestDeliveryLimitIsLogged(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	const limit = 2
	out := &testutil.Buffer{}
	c := startConnLogging(t, cfg, Options{Queues: testQueues(), DeliveryLimit: limit}, slog.New(slog.NewJSONHandler(out, nil)))
	cons := NewConsumer(c, "c", 5, func(context.Context, Delivery) error { return errors.New("database unavailable") })
	cons.requeueDelay = 50 * time.Millisecond
	cons.Start()
	defer cons.Stop(context.Background())
	poison := message(testKey, 1)
	poison.ID = "poison"
	if err := NewPublisher(c).Publish(context.Background(), poison); err != nil {
		t.Fatal(err)
	}
	dlq := DeadLetterQueue(c.Topology().QueueName("c"))
	ch := testenv.AdminChannel(t, cfg)
	testutil.Eventually(t, 20*time.Second, "the message dead-lettered", func() bool { return queueLength(t, ch, dlq) == 1 })

	var requeued, deadLettered []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch rec["msg"] {
		case "handler failed, message requeued":
			requeued = append(requeued, rec)
		case "handler failed, message dead-lettered: delivery limit reached":
			deadLettered = append(deadLettered, rec)
		}
	}
	if len(requeued) != limit || len(deadLettered) != 1 {
		t.Fatalf("%d lines of a requeue and %d of a dead letter, want %d and 1; log:\n%s", len(requeued), len(deadLettered), limit, out.String())
	}
	if rec := deadLettered[0]; rec["level"] != "ERROR" || rec["event_id"] != "poison" || rec["error"] != "database unavailable" {
		t.Errorf("dead-letter line %v, want an error naming the message and the handler's error", rec)
	}
}

// TestPublishFailsWhileBlocked: while the broker blocks the connection, publishing fails at
// once instead of hanging in a socket write.
func TestPublishFailsWhileBlocked(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	p := NewPublisher(c)
	c.blocked.Store(true) // as watch does on connection.blocked
	if err := p.Publish(context.Background(), message(testKey, 1)); !errors.Is(err, ErrBlocked) {
		t.Fatalf("got %v, want ErrBlocked", err)
	}
	c.blocked.Store(false)
	if err := p.Publish(context.Background(), message(testKey, 2)); err != nil {
		t.Fatal(err)
	}
}

// TestTopologyMismatchIsReported: when a queue of the topology already exists with other
// settings, the broker refuses the declaration. That is logged as an error that says what to
// do, and the health check says the same; once the queue is gone the connection comes up.
func TestTopologyMismatchIsReported(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// args returns the arguments of the queue that is there first.
		args func(top Topology) amqp.Table
		// refused is the argument that the broker names.
		refused string
	}{
		{"classic queue", func(Topology) amqp.Table { return nil }, "inequivalent arg"},
		{"other delivery limit", func(top Topology) amqp.Table {
			return amqp.Table{
				"x-queue-type":              "quorum",
				"x-delivery-limit":          int32(top.DeliveryLimit + 1),
				"x-dead-letter-exchange":    top.DeadLetterExchange(),
				"x-dead-letter-routing-key": top.QueueName("c"),
				"x-dead-letter-strategy":    "at-least-once",
				"x-overflow":                "reject-publish",
			}
		}, "x-delivery-limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := rabbitConfig(t)
			opts := Options{Name: cfg.Exchange, Queues: testQueues()}
			top := NewTopology(cfg.Exchange, 0, opts.Queues)
			deleteAtCleanup(t, cfg, top)
			ch := testenv.AdminChannel(t, cfg)
			queue := top.QueueName("c")
			if _, err := ch.QueueDeclare(queue, true, false, false, false, tt.args(top)); err != nil {
				t.Fatal(err)
			}

			logs := &logRecorder{}
			c := NewConn(cfg, logs.logger(), opts)
			c.Start()
			t.Cleanup(func() { _ = c.Close() })
			testutil.Eventually(t, 10*time.Second, "the refused declaration logged", func() bool {
				return len(logs.find("declaring the rabbitmq topology failed")) > 0
			})
			rec := logs.find("declaring the rabbitmq topology failed")[0]
			if rec.Level != slog.LevelError || !strings.Contains(rec.Message, "delete it, or change the settings") {
				t.Errorf("logged %s %q", rec.Level, rec.Message)
			}
			if msg := attr(rec, "error").String(); !strings.Contains(msg, "PRECONDITION_FAILED") || !strings.Contains(msg, tt.refused) || !strings.Contains(msg, queue) {
				t.Errorf("logged error %q does not carry the broker's text", msg)
			}
			if n := len(logs.find("rabbitmq unavailable")); n != 0 {
				t.Errorf("the refused declaration was also logged %d times as an outage", n)
			}
			err := c.Check(context.Background())
			if !errors.Is(err, ErrTopology) || !strings.Contains(err.Error(), "declaring the topology failed") ||
				!strings.Contains(err.Error(), "delete it, or change the settings") || !strings.Contains(err.Error(), "PRECONDITION_FAILED") {
				t.Errorf("health check says %v", err)
			}

			// Retrying succeeds once the conflicting queue is gone.
			if _, err := ch.QueueDelete(queue, false, false, false); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := c.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
