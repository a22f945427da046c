package worker_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"orderflow/configuration"
	"orderflow/ent"
	"orderflow/ent/notification"
	"orderflow/ent/order"
	entoutbox "orderflow/ent/outbox"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/bus"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
	"orderflow/worker"
)

// Log messages the end-to-end tests count.
const (
	msgCompleted     = "payment succeeded: order completed"
	msgDeclined      = "payment declined: the order stays processing until it expires"
	msgTooLate       = "payment succeeded but the order is no longer processing: nothing to complete"
	msgResumed       = "resuming a payment interrupted before its outcome"
	msgCreatedDup    = "order created event dropped: the order is no longer pending"
	msgNotifiedTwice = "order completed event dropped: the customer was already notified"
)

// system is one isolated deployment for a test: its own database and exchange, and the
// worker processes the test starts, all logging into one buffer.
type system struct {
	t     testing.TB
	cfg   *configuration.Config
	store *store
	log   *slog.Logger
	logs  *logBuffer
}

func newSystem(t testing.TB) *system {
	t.Helper()
	cfg := testenv.Config(t)
	log, logs := newLogger()
	// testenv.Config deletes the exchange's queues when the test ends.
	return &system{t: t, cfg: cfg, store: openStore(t, cfg.Database), log: log, logs: logs}
}

// workerApp is one worker process.
type workerApp struct {
	app    *fxtest.App
	worker *worker.Worker
	conn   *bus.Conn
	pool   *sql.DB
	relay  *outbox.Relay
	reg    *prometheus.Registry
}

// startWorker starts a worker process, wired as `orderflow worker` is (with the outbox relay
// that publishes the events it writes, and here also the OrderCreated rows the test inserts
// as the API would), with the given payment delay, probability and random source (nil: the
// default).
func (s *system) startWorker(delay time.Duration, probability float64, random worker.RandomSource) *workerApp {
	s.t.Helper()
	return s.startWorkerWith(worker.Options{PaymentDelay: delay, CompletionProbability: probability, Random: random})
}

// startWorkerWith starts a worker process as startWorker does, with the given options.
func (s *system) startWorkerWith(opts worker.Options) *workerApp {
	s.t.Helper()
	w := &workerApp{reg: prometheus.NewRegistry()}
	w.app = fxtest.New(s.t,
		fx.NopLogger,
		fx.Supply(s.cfg, s.log),
		// metrics.Module without its /metrics endpoint.
		fx.Supply(fx.Annotate(w.reg, fx.As(new(prometheus.Registerer)))),
		db.Module,
		bus.Module,
		// outbox.Module, keeping hold of the relay so that kill can stop it.
		fx.Module("outbox", fx.Invoke(func(lc fx.Lifecycle, pool *sql.DB, cfg *configuration.Config, pub *bus.Publisher, log *slog.Logger) {
			w.relay = outbox.RegisterRelay(lc, pool, cfg, pub, log)
		})),
		worker.Module,
		fx.Decorate(func(client *ent.Client, log *slog.Logger) *worker.Worker {
			return worker.New(client, log, opts)
		}),
		fx.Populate(&w.worker, &w.conn, &w.pool),
	)
	w.app.RequireStart()
	return w
}

// stop stops the process gracefully.
func (w *workerApp) stop() { w.app.RequireStop() }

// kill stops the process with a deadline shorter than its payments, so that the payments in
// flight are interrupted like a killed process's, then releases what the aborted stop left.
func (w *workerApp) kill(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := w.app.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop during payments: %v, want the deadline to pass", err)
	}
	stop, cancelStop := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelStop()
	if err := w.relay.Stop(stop); err != nil {
		t.Error(err)
	}
	_ = w.conn.Close()
	_ = w.pool.Close()
}

// outcome is what happened to the orders of a run.
type outcome struct {
	completed, processing, other int
	notifications, emailsSent    int
	emailLines                   int
	completedEvents              int
}

// settle waits until every one of ids has had its payment decided and every resulting
// OrderCompleted has been notified, then checks each order's end and returns the counts.
func (s *system) settle(ids []int, timeout time.Duration) outcome {
	t := s.t
	t.Helper()
	ctx := context.Background()
	testutil.Eventually(t, timeout, "every payment decided and notified", func() bool {
		// A completion whose commit was reported lost is retried and finds nothing to do.
		decided := len(s.logs.lines(t, msgCompleted)) + len(s.logs.lines(t, msgDeclined)) + len(s.logs.lines(t, msgTooLate))
		if decided < len(ids) {
			return false
		}
		completed, err := s.store.client.Order.Query().
			Where(order.IDIn(ids...), order.StatusEQ(order.StatusCompleted)).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		notified, err := s.store.client.Notification.Query().
			Where(notification.OrderIDIn(ids...), notification.IsEmailSent(true)).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return notified == completed && len(s.logs.emails(t)) >= completed
	})
	return s.check(ids)
}

// check verifies every order's end: completed with exactly one OrderCompleted notification,
// its e-mail marked sent, one e-mail log line and one OrderCompleted event; or processing
// with none of them.
func (s *system) check(ids []int) outcome {
	t := s.t
	t.Helper()
	ctx := context.Background()
	c := s.store.client
	orders, err := c.Order.Query().Where(order.IDIn(ids...)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	notes, err := c.Notification.Query().Where(notification.OrderIDIn(ids...)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	notesOf := map[int][]*ent.Notification{}
	for _, n := range notes {
		notesOf[n.OrderID] = append(notesOf[n.OrderID], n)
	}
	eventsOf := s.completedEventCounts()
	emails := s.logs.emails(t)

	var o outcome
	for _, ord := range orders {
		ns := notesOf[ord.ID]
		switch ord.Status {
		case order.StatusCompleted:
			o.completed++
			if len(ns) != 1 || ns[0].EventType != notification.EventTypeOrderCompleted || !ns[0].IsEmailSent {
				t.Errorf("completed order %d: notifications %s, want one OrderCompleted with the e-mail sent", ord.ID, describe(ns))
			}
			if emails[ord.ID] != 1 || eventsOf[ord.ID] != 1 {
				t.Errorf("completed order %d: %d e-mail log lines and %d OrderCompleted events, want 1 and 1", ord.ID, emails[ord.ID], eventsOf[ord.ID])
			}
		case order.StatusProcessing:
			o.processing++
			if len(ns) != 0 || emails[ord.ID] != 0 || eventsOf[ord.ID] != 0 {
				t.Errorf("processing order %d: notifications %s, %d e-mails, %d OrderCompleted events, want none",
					ord.ID, describe(ns), emails[ord.ID], eventsOf[ord.ID])
			}
		default:
			o.other++
			t.Errorf("order %d ended %s, want completed or processing", ord.ID, ord.Status)
		}
	}
	mustEqual(t, "orders found", len(orders), len(ids))
	for _, n := range notes {
		o.notifications++
		if n.IsEmailSent {
			o.emailsSent++
		}
	}
	for _, id := range ids {
		o.emailLines += emails[id]
		o.completedEvents += eventsOf[id]
	}
	return o
}

// completedEventCounts counts the OrderCompleted outbox rows per order.
func (s *system) completedEventCounts() map[int]int {
	s.t.Helper()
	rows, err := s.store.client.Outbox.Query().
		Where(entoutbox.EventType(events.TypeOrderCompleted)).
		All(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	counts := map[int]int{}
	for _, r := range rows {
		_, ev, err := events.Decode(r.Payload)
		if err != nil {
			s.t.Fatalf("outbox row %d: %v", r.ID, err)
		}
		counts[ev.(events.OrderCompleted).OrderID]++
	}
	return counts
}

// snapshot renders every row a redelivery could change.
func (s *system) snapshot() []string {
	s.t.Helper()
	ctx := context.Background()
	c := s.store.client
	var rows []string
	orders, err := c.Order.Query().Order(ent.Asc(order.FieldID)).All(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, o := range orders {
		rows = append(rows, fmt.Sprintf("order %d %s %s", o.ID, o.Status, o.UpdatedAt.Format(time.RFC3339Nano)))
	}
	notes, err := c.Notification.Query().Order(ent.Asc(notification.FieldID)).All(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, n := range notes {
		rows = append(rows, fmt.Sprintf("notification %d %d %s %v %q", n.ID, n.OrderID, n.EventType, n.IsEmailSent, n.Message))
	}
	outboxRows, err := c.Outbox.Query().Order(ent.Asc(entoutbox.FieldID)).All(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, e := range outboxRows {
		rows = append(rows, fmt.Sprintf("outbox %d %s %s", e.ID, e.EventID, e.EventType))
	}
	return rows
}

func TestSystemOrdersEndCompletedOrProcessingAndRepublishingChangesNothing(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	w := sys.startWorker(200*time.Millisecond, 0.5, nil)
	defer w.stop()

	ids := sys.store.newOrders(t, 200)
	o := sys.settle(ids, 60*time.Second)
	mustEqual(t, "orders that ended otherwise", o.other, 0)
	mustEqual(t, "notifications", o.notifications, o.completed)
	mustEqual(t, "e-mails marked sent", o.emailsSent, o.completed)
	mustEqual(t, "e-mail log lines", o.emailLines, o.completed)
	mustEqual(t, "OrderCompleted events", o.completedEvents, o.completed)
	// Binomial(200, 0.5): 60-140 completions lie within 5.6 standard deviations.
	if o.completed < 60 || o.completed > 140 {
		t.Errorf("%d of 200 orders completed at probability 0.5, want 60-140", o.completed)
	}
	t.Logf("%d completed, %d processing", o.completed, o.processing)
	// The counters are process wide and tests run in parallel: at least this run's payments.
	if n := counterValue(t, w.reg, "orderflow_worker_payments_total", "completed"); n < float64(o.completed) {
		t.Errorf("completed payments metric %v, want at least %d", n, o.completed)
	}
	if n := counterValue(t, w.reg, "orderflow_worker_payments_total", "declined"); n < float64(o.processing) {
		t.Errorf("declined payments metric %v, want at least %d", n, o.processing)
	}

	// Every event published so far is published once more: nothing changes.
	testutil.Eventually(t, 10*time.Second, "every event published", func() bool { return unpublished(t, sys.store.client) == 0 })
	before := sys.snapshot()
	republished := republishAll(t, sys)
	mustEqual(t, "events published again", republished, len(ids)+o.completed)
	testutil.Eventually(t, 20*time.Second, "every copy handled", func() bool {
		return len(sys.logs.lines(t, msgCreatedDup)) >= len(ids) && len(sys.logs.lines(t, msgNotifiedTwice)) >= o.completed
	})
	if after := sys.snapshot(); !slices.Equal(before, after) {
		t.Fatalf("rows changed after every event was delivered again:\nbefore %d rows, after %d rows", len(before), len(after))
	}
	if again := sys.check(ids); again != o {
		t.Fatalf("outcome after the copies %+v, want %+v", again, o)
	}
}

func TestSystemWorkerKilledDuringPaymentsResumesThemAfterRestart(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	// Every payment succeeds, so an order that does not end completed was lost.
	first := sys.startWorker(time.Hour, 1, nil)
	ids := sys.store.newOrdersBulk(t, 100)
	testutil.Eventually(t, 30*time.Second, "every payment in flight", func() bool { return first.worker.PaymentsInFlight() == int64(len(ids)) })
	first.kill(t)
	// fx gives up on the stop at its deadline while the consumer, still stopping, cancels
	// the payments and waits for their handlers to return.
	testutil.Eventually(t, 10*time.Second, "no payment left running", func() bool { return first.worker.PaymentsInFlight() == 0 })
	var processing int
	for _, id := range ids {
		if sys.store.status(t, id) == order.StatusProcessing {
			processing++
		}
	}
	mustEqual(t, "orders processing after the kill", processing, len(ids))

	second := sys.startWorker(200*time.Millisecond, 1, nil)
	defer second.stop()
	o := sys.settle(ids, 60*time.Second)
	mustEqual(t, "completed", o.completed, len(ids))
	mustEqual(t, "notifications", o.notifications, len(ids))
	mustEqual(t, "e-mail log lines", o.emailLines, len(ids))
	mustEqual(t, "OrderCompleted events", o.completedEvents, len(ids))
	mustEqual(t, "payments resumed", len(sys.logs.lines(t, msgResumed)), len(ids))
}

func TestSystemGracefulStopFinishesPaymentsInFlight(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	first := sys.startWorker(3*time.Second, 1, nil)
	ids := sys.store.newOrdersBulk(t, 50)
	testutil.Eventually(t, 30*time.Second, "every payment in flight", func() bool { return first.worker.PaymentsInFlight() == int64(len(ids)) })
	first.stop()
	for _, id := range ids {
		mustEqual(t, fmt.Sprintf("status of order %d after the stop", id), sys.store.status(t, id), order.StatusCompleted)
	}
	// Its relay stopped after the consumers and published the OrderCompleted events.
	mustEqual(t, "events left unpublished by the stopped worker", unpublished(t, sys.store.client), 0)

	// The next worker sends the e-mails and has no payment to resume.
	second := sys.startWorker(time.Second, 1, nil)
	defer second.stop()
	o := sys.settle(ids, 30*time.Second)
	mustEqual(t, "completed", o.completed, len(ids))
	mustEqual(t, "e-mail log lines", o.emailLines, len(ids))
	mustEqual(t, "payments resumed", len(sys.logs.lines(t, msgResumed)), 0)
}

// heldMailer holds every e-mail until release is closed, telling sending when one waits.
type heldMailer struct {
	sending chan struct{}
	release chan struct{}
}

func (m *heldMailer) Send(context.Context, worker.Email) error {
	select {
	case m.sending <- struct{}{}:
	default:
	}
	<-m.release
	return nil
}

// TestSystemConsumesEveryQueue: the worker consumes every queue the processes declare, so
// that no event type is left to pile up in a queue nobody reads.
func TestSystemConsumesEveryQueue(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	sys.startWorker(time.Millisecond, 1, nil)
	conn, err := amqp.Dial(sys.cfg.RabbitMQ.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range bus.SystemQueues() {
		queue := sys.cfg.RabbitMQ.Exchange + "." + q.Consumer
		testutil.Eventually(t, 10*time.Second, "a consumer of "+queue+" ("+q.RoutingKey+")", func() bool { return consumers(t, conn, queue) > 0 })
	}
}

// consumers returns the consumers of queue, 0 while it is not declared. The worker declares
// the queues and subscribes after its start has returned; a passive declaration of a queue
// not there yet closes its channel, hence one per look.
func consumers(t testing.TB, conn *amqp.Connection, queue string) int {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	q, err := declarePassive(ch, queue)
	if err != nil {
		return 0
	}
	return q.Consumers
}

// declarePassive reads the messages and consumers of the durable queue name, or fails when
// it does not exist, which closes ch.
func declarePassive(ch *amqp.Channel, name string) (amqp.Queue, error) {
	return ch.QueueDeclarePassive(name,
		true,  // durable
		false, // auto-delete
		false, // exclusive
		false, // no-wait
		nil)
}

// TestSystemOrderCreatedMovedBackFromItsDeadLetterQueueResumesThePayment: an OrderCreated
// dead-lettered after its deliveries were cut off during the payment leaves its order
// processing; moved back to its queue (a new message, carrying the broker's x-death header,
// not flagged redelivered), it resumes the payment instead of being dropped as a copy.
func TestSystemOrderCreatedMovedBackFromItsDeadLetterQueueResumesThePayment(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	ctx := context.Background()
	id := sys.store.newOrders(t, 1)[0]
	// Claimed by the deliveries that were cut off, and published by then.
	if _, err := sys.store.client.ExecContext(ctx, `UPDATE orders SET status = 'processing' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	row := sys.store.client.Outbox.Query().OnlyX(ctx)
	sys.store.client.Outbox.UpdateOne(row).SetPublishedAt(time.Now()).ExecX(ctx)
	w := sys.startWorker(10*time.Millisecond, 1, nil)
	defer w.stop()

	conn, err := amqp.Dial(sys.cfg.RabbitMQ.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	queue := sys.cfg.RabbitMQ.Exchange + "." + bus.ConsumerOrderCreated
	// A message published before the worker declared its queue would go nowhere.
	testutil.Eventually(t, 10*time.Second, "a consumer of "+queue, func() bool { return consumers(t, conn, queue) > 0 })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	err = ch.PublishWithContext(ctx, sys.cfg.RabbitMQ.Exchange, row.RoutingKey, true, false, amqp.Publishing{
		MessageId: row.EventID.String(), Type: row.EventType, ContentType: events.ContentType,
		DeliveryMode: amqp.Persistent, Body: row.Payload,
		Headers: amqp.Table{"x-death": []any{amqp.Table{
			"count": int64(1), "reason": "delivery_limit", "queue": queue,
			"exchange": sys.cfg.RabbitMQ.Exchange, "routing-keys": []any{row.RoutingKey},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the order completed", func() bool { return sys.store.status(t, id) == order.StatusCompleted })
	mustEqual(t, "payments resumed", len(sys.logs.lines(t, msgResumed)), 1)
	mustEqual(t, "copies dropped", len(sys.logs.lines(t, msgCreatedDup)), 0)
}

// TestSystemStopTakesNoNewDeliveries: a stopping worker stops taking deliveries on every
// queue at once, so that while it waits for a handler of one queue (here an e-mail being
// sent), it begins no payment of an order written meanwhile.
func TestSystemStopTakesNoNewDeliveries(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	mail := &heldMailer{sending: make(chan struct{}, 1), release: make(chan struct{})}
	w := sys.startWorkerWith(worker.Options{PaymentDelay: 10 * time.Millisecond, CompletionProbability: 1, Mailer: mail})
	first := sys.store.newOrders(t, 1)
	select {
	case <-mail.sending:
	case <-time.After(30 * time.Second):
		t.Fatal("the completion e-mail of the first order was never sent")
	}

	stopped := make(chan error, 1)
	go func() {
		// Longer than the waits below: past its deadline a stop cancels every consumer
		// anyway, which would hide one that waited for the e-mail before cancelling them.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stopped <- w.app.Stop(ctx)
	}()
	ch := testenv.AdminChannel(t, sys.cfg.RabbitMQ)
	consumers := func(consumer string) int {
		return queueState(t, ch, sys.cfg.RabbitMQ.Exchange+"."+consumer).Consumers
	}
	// Every consumer is cancelled at once, each in a goroutine of its own: the stop has
	// begun once neither the order-expired nor the order-created queue has one. A stop that
	// waited for the e-mail before cancelling the others never gets there.
	testutil.Eventually(t, 30*time.Second, "the stop to begin", func() bool {
		return consumers(bus.ConsumerOrderExpired) == 0 && consumers(bus.ConsumerOrderCreated) == 0
	})
	// The relay still runs, and publishes the order's event.
	second := sys.store.newOrders(t, 1)
	testutil.Eventually(t, 30*time.Second, "the second order's event to be published", func() bool { return unpublished(t, sys.store.client) == 0 })
	time.Sleep(500 * time.Millisecond)
	statusDuringStop := sys.store.status(t, second[0])
	createdConsumers := consumers(bus.ConsumerOrderCreated)
	close(mail.release)
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if statusDuringStop != order.StatusPending || createdConsumers != 0 {
		t.Errorf("while the worker stopped: order written meanwhile %s, order-created consumers %d; want pending and 0",
			statusDuringStop, createdConsumers)
	}
	mustEqual(t, "status of the first order", sys.store.status(t, first[0]), order.StatusCompleted)
}

func TestSystemDatabaseOutageLosesNothing(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	// The worker reaches the database through a proxy that the test cuts; the test itself
	// connects directly.
	px := testutil.StartProxy(t, net.JoinHostPort(sys.cfg.Database.Host, strconv.Itoa(sys.cfg.Database.Port)))
	direct := *sys.cfg
	sys.cfg.Database.Host, sys.cfg.Database.Port = "127.0.0.1", px.Port()
	w := sys.startWorker(3*time.Second, 1, nil)
	defer w.stop()
	sys.cfg = &direct

	ids := sys.store.newOrdersBulk(t, 50)
	testutil.Eventually(t, 30*time.Second, "every payment in flight", func() bool { return w.worker.PaymentsInFlight() == int64(len(ids)) })
	// The database goes away while the payments run, for longer than the queue's delivery
	// limit of requeues would last, and comes back.
	px.Cut()
	time.Sleep(time.Duration(bus.DefaultDeliveryLimit+2) * time.Second)
	px.Restore()

	o := sys.settle(ids, 60*time.Second)
	mustEqual(t, "completed", o.completed, len(ids))
	mustEqual(t, "e-mail log lines", o.emailLines, len(ids))
	mustEqual(t, "outages logged", len(sys.logs.lines(t, "database unavailable: handlers keep their messages and retry")), 1)
	mustEqual(t, "recoveries logged", len(sys.logs.lines(t, "database available again")), 1)
	mustEqual(t, "dead letters", deadLetters(t, testenv.AdminChannel(t, sys.cfg.RabbitMQ), sys.cfg.RabbitMQ.Exchange), 0)
}

func TestSystemMalformedEventsAreDeadLetteredWithoutBlocking(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	w := sys.startWorker(100*time.Millisecond, 1, nil)
	defer w.stop()
	conn := bus.NewConn(sys.cfg.RabbitMQ, sys.log, bus.Options{Name: "worker-test-poison"})
	conn.Start()
	defer conn.Close()
	pub := bus.NewPublisher(conn)
	poison := []bus.Message{
		{ID: "not-json", Type: events.TypeOrderCreated, RoutingKey: events.RoutingKeyOrderCreated,
			ContentType: events.ContentType, Body: []byte(`{"specversion":`), Time: time.Now()},
		{ID: "unknown-type", Type: "orderflow.order.unknown.v1", RoutingKey: events.RoutingKeyOrderCompleted,
			ContentType: events.ContentType, Time: time.Now(),
			Body: []byte(`{"specversion":"1.0","id":"x","source":"orderflow/api","type":"orderflow.order.unknown.v1","time":"2026-12-01T00:00:00Z","datacontenttype":"application/json","data":{}}`)},
	}
	for i, err := range pub.PublishBatch(context.Background(), poison) {
		if err != nil {
			t.Fatalf("publish %s: %v", poison[i].ID, err)
		}
	}
	ids := sys.store.newOrders(t, 5)
	o := sys.settle(ids, 30*time.Second)
	mustEqual(t, "completed", o.completed, len(ids))
	admin := testenv.AdminChannel(t, sys.cfg.RabbitMQ)
	testutil.Eventually(t, 10*time.Second, "both poison messages dead-lettered", func() bool {
		return deadLetters(t, admin, sys.cfg.RabbitMQ.Exchange) == 2
	})
}

func TestSystemTwoWorkersGiveTheSameResultAsOne(t *testing.T) {
	t.Parallel()
	// Payments of even order ids succeed: the outcome of each order is known in advance.
	even := func(id int) float64 {
		if id%2 == 0 {
			return 0
		}
		return 0.99
	}
	run := func(t *testing.T, workers int) outcome {
		sys := newSystem(t)
		for range workers {
			w := sys.startWorker(200*time.Millisecond, 0.5, even)
			defer w.stop()
		}
		ids := sys.store.newOrders(t, 200)
		o := sys.settle(ids, 60*time.Second)
		var wantCompleted int
		for _, id := range ids {
			if id%2 == 0 {
				wantCompleted++
			}
			want := order.StatusProcessing
			if id%2 == 0 {
				want = order.StatusCompleted
			}
			mustEqual(t, fmt.Sprintf("status of order %d", id), sys.store.status(t, id), want)
		}
		mustEqual(t, "completed", o.completed, wantCompleted)
		mustEqual(t, "processing", o.processing, len(ids)-wantCompleted)
		mustEqual(t, "notifications", o.notifications, wantCompleted)
		mustEqual(t, "e-mail log lines", o.emailLines, wantCompleted)
		mustEqual(t, "OrderCompleted events", o.completedEvents, wantCompleted)
		return o
	}
	results := make(chan outcome, 2)
	t.Run("group", func(t *testing.T) {
		for _, n := range []int{1, 2} {
			t.Run(fmt.Sprintf("%d workers", n), func(t *testing.T) {
				t.Parallel()
				results <- run(t, n)
			})
		}
	})
	close(results)
	var got []outcome
	for o := range results {
		got = append(got, o)
	}
	if len(got) == 2 && got[0] != got[1] {
		t.Fatalf("one worker and two workers differ: %+v and %+v", got[0], got[1])
	}
}

func TestSystemPaymentsOverlap(t *testing.T) {
	t.Parallel()
	sys := newSystem(t)
	// Payments that never end on their own: every delivery the worker accepts stays in
	// flight, so the count shows how many payments the default wiring runs at once.
	w := sys.startWorker(time.Hour, 0.5, nil)
	const orders = 2600
	sys.store.newOrdersBulk(t, orders)
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("%d payments in flight at once", orders), func() bool {
		return w.worker.PaymentsInFlight() == orders
	})
	w.kill(t)
}

// BenchmarkOrdersThroughPayment measures how many orders per second pass the default
// 5 s payment with the default wiring: 6,000 orders are inserted at once (as a burst of API
// requests would), and the clock stops when every payment is decided. Run it with
// go test -run '^$' -bench OrdersThroughPayment -benchtime 1x ./worker/
func BenchmarkOrdersThroughPayment(b *testing.B) {
	for b.Loop() {
		sys := newSystem(b)
		def := configuration.Defaults()
		sys.cfg.Database.MaxConns = def.Database.MaxConns
		w := sys.startWorker(def.Orders.PaymentDelay.D(), def.Orders.CompletionProbability, nil)
		const orders = 6000
		start := time.Now()
		sys.store.newOrdersBulk(b, orders)
		inserted := time.Since(start)
		var peak int64
		var atPeak time.Duration
		testutil.Eventually(b, 5*time.Minute, "every payment decided", func() bool {
			if n := w.worker.PaymentsInFlight(); n > peak {
				peak, atPeak = n, time.Since(start)
			}
			return len(sys.logs.lines(b, msgCompleted))+len(sys.logs.lines(b, msgDeclined)) >= orders
		})
		took := time.Since(start)
		b.ReportMetric(orders/took.Seconds(), "orders/s")
		b.ReportMetric(float64(peak), "peak-payments-in-flight")
		b.Logf("inserted after %s, peak %d at %s, all decided after %s", inserted, peak, atPeak, took)
		w.stop()
	}
}

func TestModuleWiring(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	log, _ := newLogger()
	if err := fx.ValidateApp(fx.NopLogger, fx.Supply(&cfg, log), fx.Provide(newRegistry), db.Module, bus.Module, outbox.Module, worker.Module); err != nil {
		t.Fatalf("worker wiring: %v", err)
	}
	// Without the bus there is no connection to consume from: the wiring must say so.
	if err := fx.ValidateApp(fx.NopLogger, fx.Supply(&cfg, log), fx.Provide(newRegistry), db.Module, worker.Module); err == nil {
		t.Fatal("worker wiring without bus.Module validated, want a missing *bus.Conn")
	}
}

// message is the bus message of an outbox row, as the relay publishes it.
func message(r *ent.Outbox) bus.Message {
	return bus.Message{
		ID: r.EventID.String(), Type: r.EventType, RoutingKey: r.RoutingKey,
		ContentType: events.ContentType, Body: r.Payload, Time: r.CreatedAt, Headers: r.Headers,
	}
}

// republishAll publishes every event of the outbox once more and returns how many.
func republishAll(t testing.TB, sys *system) int {
	t.Helper()
	ctx := context.Background()
	rows, err := sys.store.client.Outbox.Query().Order(ent.Asc(entoutbox.FieldID)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn := bus.NewConn(sys.cfg.RabbitMQ, sys.log, bus.Options{Name: "worker-test-republish"})
	conn.Start()
	defer conn.Close()
	pub := bus.NewPublisher(conn)
	msgs := make([]bus.Message, len(rows))
	for i, r := range rows {
		msgs[i] = message(r)
	}
	for i, err := range pub.PublishBatch(ctx, msgs) {
		if err != nil {
			t.Fatalf("publish event %s again: %v", msgs[i].ID, err)
		}
	}
	return len(rows)
}

func unpublished(t testing.TB, client *ent.Client) int {
	t.Helper()
	n, err := client.Outbox.Query().Where(entoutbox.PublishedAtIsNil()).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newRegistry stands in for metrics.Module, which also serves /metrics on the HTTP server.
func newRegistry() prometheus.Registerer { return prometheus.NewRegistry() }

// counterValue returns the value of the counter name with the given label value in reg.
func counterValue(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{%s} not registered", name, label)
	return 0
}

// deadLetters counts the messages in the dead-letter queues of exchange's topology.
func deadLetters(t testing.TB, ch *amqp.Channel, exchange string) int {
	t.Helper()
	n := 0
	for _, q := range bus.NewTopology(exchange, 0, nil).Queues {
		n += queueState(t, ch, bus.DeadLetterQueue(exchange+"."+q.Consumer)).Messages
	}
	return n
}

// queueState reads the messages and consumers of the durable queue name, which must exist.
func queueState(t testing.TB, ch *amqp.Channel, name string) amqp.Queue {
	t.Helper()
	q, err := declarePassive(ch, name)
	if err != nil {
		t.Fatal(err)
	}
	return q
}
