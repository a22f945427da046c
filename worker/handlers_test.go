package worker_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow/ent/notification"
	"orderflow/ent/order"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/bus"
	"orderflow/platform/db"
	"orderflow/worker"
)

// newWorker returns a worker on s with a 20 ms payment, probability 0.5 and the given
// random source, logging JSON into the returned buffer.
func newWorker(s *store, random worker.RandomSource) (*worker.Worker, *logBuffer) {
	log, buf := newLogger()
	return worker.New(s.client, log, worker.Options{
		PaymentDelay:          20 * time.Millisecond,
		CompletionProbability: 0.5,
		Random:                random,
	}), buf
}

func TestOrderCreatedCompletesOrder(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0.1))
	created := s.newOrder(t, s.newUser(t, "Grace Hopper"), 2)
	_, body := envelope(t, events.SourceAPI, created)

	if err := w.Handle(context.Background(), worker.Delivery{Body: body}); err != nil {
		t.Fatalf("handle: %v", err)
	}
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusCompleted)
	done := s.completedEvents(t, created.OrderID)
	mustEqual(t, "OrderCompleted events", len(done), 1)
	mustEqual(t, "event user", done[0].UserID, created.UserID)
	mustEqual(t, "event total", done[0].Total.StringFixed(2), "199.98")
	mustEqual(t, "outcome log lines", len(logs.lines(t, "payment succeeded: order completed")), 1)

	// Any number of further deliveries, flagged redelivered or not, change nothing.
	for i := range 4 {
		if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: i%2 == 0}); err != nil {
			t.Fatalf("handle duplicate %d: %v", i, err)
		}
	}
	mustEqual(t, "status after duplicates", s.status(t, created.OrderID), order.StatusCompleted)
	mustEqual(t, "OrderCompleted events after duplicates", len(s.completedEvents(t, created.OrderID)), 1)
}

func TestOrderCreatedDeclinedPaymentLeavesOrderProcessing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	random := &counted{r: always(0.5)} // not below 0.5: declined
	w, logs := newWorker(s, random.draw)
	created := s.newOrder(t, s.newUser(t, "Alan Turing"), 1)
	_, body := envelope(t, events.SourceAPI, created)

	if err := w.Handle(context.Background(), worker.Delivery{Body: body}); err != nil {
		t.Fatalf("handle: %v", err)
	}
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusProcessing)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 0)
	mustEqual(t, "outcome log lines", len(logs.lines(t, "payment declined: the order stays processing until it expires")), 1)
	mustEqual(t, "draws", random.count(), 1)

	// A duplicate that is not a broker redelivery (an outbox relay published the event
	// again) does not pay a second time: the first payment's decision stands.
	for i := range 3 {
		if err := w.Handle(context.Background(), worker.Delivery{Body: body}); err != nil {
			t.Fatalf("handle duplicate %d: %v", i, err)
		}
	}
	mustEqual(t, "status after duplicates", s.status(t, created.OrderID), order.StatusProcessing)
	mustEqual(t, "draws after duplicates", random.count(), 1)
	mustEqual(t, "skip log lines", len(logs.lines(t, "order created event dropped: the order is no longer pending")), 3)

	// Nor does a broker redelivery of one (a copy whose first delivery was interrupted, or
	// the declined delivery's own, its acknowledgement lost): the order records the decline.
	if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
		t.Fatalf("handle redelivery: %v", err)
	}
	mustEqual(t, "status after a redelivery", s.status(t, created.OrderID), order.StatusProcessing)
	mustEqual(t, "draws after a redelivery", random.count(), 1)
	mustEqual(t, "declined-before log lines",
		len(logs.lines(t, "order created event dropped: the order's payment was declined before")), 1)
}

func TestOrderCreatedInterruptedPaymentIsNotAcknowledgedAndResumesOnRedelivery(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	log, logs := newLogger()
	w := worker.New(s.client, log, worker.Options{
		PaymentDelay:          time.Hour,
		CompletionProbability: 0.5,
		Random:                always(0),
	})
	created := s.newOrder(t, s.newUser(t, "Edsger Dijkstra"), 1)
	_, body := envelope(t, events.SourceAPI, created)

	// The process stops during the payment: the handler fails, so the message is not acked.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Handle(ctx, worker.Delivery{Body: body}) }()
	testutil.Eventually(t, 10*time.Second, "payment to start", func() bool { return w.PaymentsInFlight() == 1 })
	cancel()
	err := <-errc
	if err == nil || errors.Is(err, bus.ErrPermanent) || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted payment returned %v, want a transient error wrapping context.Canceled", err)
	}
	mustEqual(t, "status after interruption", s.status(t, created.OrderID), order.StatusProcessing)
	mustEqual(t, "payments in flight", w.PaymentsInFlight(), int64(0))

	// The broker redelivers it: the order is processing without an outcome, so the payment
	// runs again and completes the order.
	resumed := worker.New(s.client, log, worker.Options{
		PaymentDelay:          10 * time.Millisecond,
		CompletionProbability: 0.5,
		Random:                always(0),
	})
	if err := resumed.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
		t.Fatalf("handle redelivery: %v", err)
	}
	mustEqual(t, "status after redelivery", s.status(t, created.OrderID), order.StatusCompleted)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 1)
	mustEqual(t, "resume log lines", len(logs.lines(t, "resuming a payment interrupted before its outcome")), 1)
}

// TestOrderCreatedInterruptedAfterItsPaymentSucceededCompletes: a delivery interrupted (its
// channel closed) after the payment succeeded still records the completion, so that the
// redelivery finds the order completed instead of drawing the payment again.
func TestOrderCreatedInterruptedAfterItsPaymentSucceededCompletes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	random := &counted{r: func(int) float64 {
		cancel() // the interruption comes right after the draw
		return 0
	}}
	w, logs := newWorker(s, random.draw)
	created := s.newOrder(t, s.newUser(t, "Leslie Lamport"), 1)
	_, body := envelope(t, events.SourceAPI, created)

	if err := w.Handle(ctx, worker.Delivery{Body: body}); err != nil {
		t.Fatalf("handle: %v", err)
	}
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusCompleted)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 1)
	mustEqual(t, "outcome log lines", len(logs.lines(t, "payment succeeded: order completed")), 1)

	// The acknowledgement was lost with the channel: the redelivery changes nothing.
	if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
		t.Fatalf("handle redelivery: %v", err)
	}
	mustEqual(t, "draws", random.count(), 1)
	mustEqual(t, "OrderCompleted events after the redelivery", len(s.completedEvents(t, created.OrderID)), 1)
}

func TestOrderCreatedConcurrentRedeliveriesCompleteOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, _ := newWorker(s, always(0))
	created := s.newOrder(t, s.newUser(t, "Barbara Liskov"), 1)
	_, body := envelope(t, events.SourceAPI, created)
	s.setStatus(t, created.OrderID, order.StatusProcessing) // a payment died before its outcome

	// Several redeliveries run at once (the first handler's channel closed while it was
	// still alive, then its replacement was interrupted too, ...): one completion only.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("handle: %v", err)
		}
	}
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusCompleted)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 1)
}

// TestOrderCreatedCopiesWaitingForTheDatabasePayOnce: two copies of an OrderCreated (an
// outbox relay that could not mark its rows published during a database outage publishes
// them again) wait for the database together. A claim that failed to connect did not
// commit, so the copy that finds the order processing afterwards leaves the payment to the
// copy that claimed it instead of drawing a second time.
func TestOrderCreatedCopiesWaitingForTheDatabasePayOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	px := testutil.StartProxy(t, net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)))
	viaProxy := s.cfg
	viaProxy.Host, viaProxy.Port = "127.0.0.1", px.Port()
	random := &counted{r: always(0.5)} // declined: the order stays processing
	log, logs := newLogger()
	w := worker.New(openUnchecked(t, viaProxy), log, worker.Options{
		PaymentDelay:          20 * time.Millisecond,
		CompletionProbability: 0.5,
		Random:                random.draw,
	})
	created := s.newOrder(t, s.newUser(t, "Per Brinch Hansen"), 1)
	_, body := envelope(t, events.SourceAPI, created)

	px.Cut()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- w.Handle(context.Background(), worker.Delivery{Body: body}) }()
	}
	testutil.Eventually(t, 5*time.Second, "the outage to be noticed", func() bool {
		return len(logs.lines(t, "database unavailable: handlers keep their messages and retry")) == 1
	})
	time.Sleep(300 * time.Millisecond) // both copies have failed to connect
	px.Restore()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("handle: %v", err)
		}
	}
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusProcessing)
	mustEqual(t, "draws", random.count(), 1)
	mustEqual(t, "skip log lines", len(logs.lines(t, "order created event dropped: the order is no longer pending")), 1)
}

// TestHandlersLeaveAConnectionThatStopsAnswering: after a failover that leaves the worker's
// connections to a database that went away without closing them, the handlers give up the
// attempts waiting on them and retry on new connections, keeping their messages, instead of
// waiting until TCP gives up (up to a quarter of an hour); every effect still happens once.
func TestHandlersLeaveAConnectionThatStopsAnswering(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	random := &counted{r: always(0)} // every payment succeeds
	f, ctx := newFailover(t, s, worker.Options{
		// Long enough for the three payments to be in flight together on a busy machine.
		PaymentDelay:          2 * time.Second,
		CompletionProbability: 0.5,
		Random:                random.draw,
	})
	user := s.newUser(t, "Jim Gray")
	var created []events.OrderCreated
	for range 3 {
		created = append(created, s.newOrder(t, user, 1))
	}
	completed := s.newOrder(t, user, 2)
	s.setStatus(t, completed.OrderID, order.StatusCompleted)
	expired := s.newOrder(t, user, 1)
	s.setStatus(t, expired.OrderID, order.StatusExpired)
	f.openIdle(t, s.cfg.MaxConns)

	errs := make(chan error, len(created)+2)
	for _, c := range created {
		_, body := envelope(t, events.SourceAPI, c)
		go func() { errs <- f.worker.Handle(ctx, worker.Delivery{Body: body}) }()
	}
	testutil.Eventually(t, 10*time.Second, "every payment in flight", func() bool {
		return f.worker.PaymentsInFlight() == int64(len(created))
	})
	// The failover, while the payments run: every connection of the pool stops answering.
	f.proxy.Strand()
	_, completedBody := envelope(t, events.SourceWorker, events.OrderCompleted{
		OrderID: completed.OrderID, UserID: user.ID, Total: completed.Total, CompletedAt: time.Now(),
	})
	_, expiredBody := envelope(t, events.SourceCronJob, events.OrderExpired{
		OrderID: expired.OrderID, UserID: user.ID, Total: expired.Total, ExpiredAt: time.Now(), ExpiredAfter: "10m0s",
	})
	for _, body := range [][]byte{completedBody, expiredBody} {
		go func() { errs <- f.worker.Handle(ctx, worker.Delivery{Body: body}) }()
	}
	waitAll(t, errs, len(created)+2, 15*time.Second, "after the failover")

	for _, c := range created {
		mustEqual(t, "status of order "+itoa(c.OrderID), s.status(t, c.OrderID), order.StatusCompleted)
		mustEqual(t, "OrderCompleted events of order "+itoa(c.OrderID), len(s.completedEvents(t, c.OrderID)), 1)
	}
	mustEqual(t, "draws", random.count(), len(created))
	ns := s.notifications(t, completed.OrderID)
	if len(ns) != 1 || !ns[0].IsEmailSent {
		t.Fatalf("notifications of the completed order = %s, want one with the e-mail sent", describe(ns))
	}
	mustEqual(t, "e-mails", f.logs.emails(t)[completed.OrderID], 1)
	ns = s.notifications(t, expired.OrderID)
	if len(ns) != 1 || ns[0].EventType != notification.EventTypeOrderExpired {
		t.Fatalf("notifications of the expired order = %s, want one OrderExpired", describe(ns))
	}
	if len(f.logs.lines(t, "database unavailable: handlers keep their messages and retry")) == 0 {
		t.Error("no outage logged: the attempts cut off did not count as the database being unavailable")
	}
}

// TestOrderCreatedClaimCutOffAfterItCommittedPays: a claim that reached the database, and
// committed, on a connection that stopped answering before its reply is given up like one
// on a dropped connection: the delivery takes the order found processing as its own and
// pays for it, once.
func TestOrderCreatedClaimCutOffAfterItCommittedPays(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	random := &counted{r: always(0)}
	f, ctx := newFailover(t, s, worker.Options{
		PaymentDelay:          20 * time.Millisecond,
		CompletionProbability: 0.5,
		Random:                random.draw,
	})
	created := s.newOrder(t, s.newUser(t, "Michael Stonebraker"), 1)
	_, body := envelope(t, events.SourceAPI, created)

	// The test holds the order's row, so that the claim waits for it in the database.
	direct := testenv.Pool(t, s.cfg)
	lock, err := direct.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback() }()
	if _, err := lock.Exec(`SELECT 1 FROM orders WHERE id = $1 FOR UPDATE`, created.OrderID); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() { errs <- f.worker.Handle(ctx, worker.Delivery{Body: body}) }()
	testutil.Eventually(t, 10*time.Second, "the claim to wait for the row", func() bool {
		var waiting int
		if err := direct.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting > 0
	})
	f.proxy.Strand() // the claim's reply will not arrive
	if err := lock.Commit(); err != nil {
		t.Fatal(err)
	}
	waitAll(t, errs, 1, 15*time.Second, "after the failover")

	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusCompleted)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 1)
	mustEqual(t, "draws", random.count(), 1)
	mustEqual(t, "resume log lines", len(f.logs.lines(t, "resuming a payment interrupted before its outcome")), 1)
}

// TestOrderCreatedCopiesOnASilentDatabasePayOnce: two copies of an OrderCreated find the
// pool's connections silent. Their claims were cut off before they were sent (the check of
// an idle connection got no answer), so they changed nothing: the copy that finds the order
// processing afterwards leaves the payment to the copy that claimed it.
func TestOrderCreatedCopiesOnASilentDatabasePayOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	random := &counted{r: always(0.5)} // declined: the order stays processing
	f, ctx := newFailover(t, s, worker.Options{
		PaymentDelay:          20 * time.Millisecond,
		CompletionProbability: 0.5,
		Random:                random.draw,
	})
	created := s.newOrder(t, s.newUser(t, "Pat Helland"), 1)
	_, body := envelope(t, events.SourceAPI, created)
	f.openIdle(t, 2)
	time.Sleep(1100 * time.Millisecond) // idle long enough for the driver to check them before use

	f.proxy.Strand()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- f.worker.Handle(ctx, worker.Delivery{Body: body}) }()
	}
	waitAll(t, errs, 2, 15*time.Second, "after the failover")

	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusProcessing)
	mustEqual(t, "draws", random.count(), 1)
	mustEqual(t, "skip log lines", len(f.logs.lines(t, "order created event dropped: the order is no longer pending")), 1)
}

// TestOrderCreatedForAnOrderAnAdministratorMovedToProcessingIsNotPaid: the contract lets an
// administrator move a pending order to processing, and its payment is then theirs. Neither
// the first delivery of its OrderCreated nor a redelivery (one whose first delivery ended
// before its claim) runs a payment, which would complete the order half the time.
func TestOrderCreatedForAnOrderAnAdministratorMovedToProcessingIsNotPaid(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	random := &counted{r: always(0)}
	w, logs := newWorker(s, random.draw)
	created := s.newOrder(t, s.newUser(t, "Grace Hopper"), 1)
	s.movedByAdmin(t, created.OrderID)
	_, body := envelope(t, events.SourceAPI, created)
	for _, redelivered := range []bool{false, true} {
		if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: redelivered}); err != nil {
			t.Fatalf("handle (redelivered %v): %v", redelivered, err)
		}
	}
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusProcessing)
	mustEqual(t, "draws", random.count(), 0)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 0)
	mustEqual(t, "skip log lines", len(logs.lines(t,
		"order created event dropped: an administrator moved the order to processing, and its payment is theirs")), 2)
}

func TestOrderCreatedForOrderThatMovedOnIsDropped(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for _, st := range []order.Status{order.StatusCompleted, order.StatusExpired} {
		random := &counted{r: always(0)}
		w, logs := newWorker(s, random.draw)
		created := s.newOrder(t, s.newUser(t, "Ken Thompson"), 1)
		s.setStatus(t, created.OrderID, st)
		_, body := envelope(t, events.SourceAPI, created)
		for _, redelivered := range []bool{false, true} {
			if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: redelivered}); err != nil {
				t.Fatalf("%s: handle: %v", st, err)
			}
		}
		mustEqual(t, string(st)+": status", s.status(t, created.OrderID), st)
		mustEqual(t, string(st)+": draws", random.count(), 0)
		mustEqual(t, string(st)+": OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 0)
		mustEqual(t, string(st)+": skip log lines", len(logs.lines(t, "order created event dropped: the order is no longer pending")), 2)
	}
}

// TestOrderChangedDuringPaymentIsNotCompleted: while an order's payment runs, the cron job
// expires it, or an administrator deletes it. The payment then succeeds with nothing to
// complete: the delivery is acknowledged, no event is written, an expired order stays
// expired, and the log says which of the two happened.
func TestOrderChangedDuringPaymentIsNotCompleted(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	const msgGone = "payment succeeded but the order no longer exists: nothing to complete"
	for _, c := range []struct {
		name           string
		change         func(orderID int) error
		level, logLine string
	}{
		{"expired by the cron job", func(id int) error {
			return s.client.Order.UpdateOneID(id).SetStatus(order.StatusExpired).Exec(context.Background())
		}, "INFO", msgTooLate},
		{"deleted by an administrator", func(id int) error {
			return s.client.Order.DeleteOneID(id).Exec(context.Background())
		}, "WARN", msgGone},
	} {
		t.Run(c.name, func(t *testing.T) {
			log, logs := newLogger()
			w := worker.New(s.client, log, worker.Options{
				PaymentDelay:          10 * time.Millisecond,
				CompletionProbability: 1,
				// The change comes as the payment's outcome is drawn, after its wait and
				// before its completion, however slow the machine.
				Random: func(id int) float64 {
					if err := c.change(id); err != nil {
						t.Errorf("change the order during its payment: %v", err)
					}
					return 0
				},
			})
			created := s.newOrder(t, s.newUser(t, c.name), 1)
			_, body := envelope(t, events.SourceAPI, created)
			errc := make(chan error, 1)
			go func() { errc <- w.Handle(context.Background(), worker.Delivery{Body: body}) }()
			if err := <-errc; err != nil {
				t.Fatalf("handle: %v, want nil (ack)", err)
			}
			mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 0)
			if c.logLine == msgTooLate {
				mustEqual(t, "status", s.status(t, created.OrderID), order.StatusExpired)
			}
			for _, line := range []string{msgTooLate, msgGone} {
				got := logs.lines(t, line)
				want := 0
				if line == c.logLine {
					want = 1
				}
				if len(got) != want || (want == 1 && got[0]["level"] != c.level) {
					t.Errorf("log lines %q: %v, want %d at %s", line, got, want, c.level)
				}
				if want == 1 && line == msgTooLate && got[0]["status"] != string(order.StatusExpired) {
					t.Errorf("log line %q: status %v, want %q", line, got[0]["status"], order.StatusExpired)
				}
			}
		})
	}
}

func TestEventsForMissingOrderAreAcknowledged(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0))
	const missing = 987654
	evs := []events.Event{
		events.OrderCreated{OrderID: missing, UserID: 1, Total: money("1.00"), CreatedAt: time.Now(),
			Items: []events.Item{{ProductID: 1, Quantity: 1, Price: money("1.00")}}},
		events.OrderCompleted{OrderID: missing, UserID: 1, Total: money("1.00"), CompletedAt: time.Now()},
		events.OrderExpired{OrderID: missing, UserID: 1, Total: money("1.00"), ExpiredAt: time.Now(), ExpiredAfter: "10m0s"},
	}
	for _, e := range evs {
		_, body := envelope(t, events.SourceAPI, e)
		if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
			t.Fatalf("%s for a missing order: %v, want nil (ack)", e.Name(), err)
		}
	}
	mustEqual(t, "created log lines", len(logs.lines(t, "order created event dropped: the order no longer exists")), 1)
	mustEqual(t, "completed log lines", len(logs.lines(t, "order completed event dropped: the order no longer exists")), 1)
	mustEqual(t, "expired log lines", len(logs.lines(t, "order expired event dropped: the order no longer exists")), 1)
	mustEqual(t, "e-mails", len(logs.emails(t)), 0)
}

func TestOrderCompletedNotifiesOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0))
	user := s.newUser(t, "Margaret Hamilton")
	created := s.newOrder(t, user, 3)
	s.setStatus(t, created.OrderID, order.StatusCompleted)
	_, body := envelope(t, events.SourceWorker, events.OrderCompleted{
		OrderID: created.OrderID, UserID: user.ID, Total: created.Total, CompletedAt: time.Now(),
	})

	// The first delivery and duplicates, some of them concurrent.
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Go(func() { errs <- w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: i > 2}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("handle: %v", err)
		}
	}
	if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
		t.Fatalf("handle late duplicate: %v", err)
	}

	ns := s.notifications(t, created.OrderID)
	if len(ns) != 1 || ns[0].EventType != notification.EventTypeOrderCompleted || !ns[0].IsEmailSent {
		t.Fatalf("notifications = %s, want one OrderCompleted with the e-mail sent", describe(ns))
	}
	want := "Your order #" + itoa(created.OrderID) + " for 299.97 has been completed. Thank you for your purchase!"
	mustEqual(t, "notification message", ns[0].Message, want)

	mails := logs.lines(t, "email sent")
	if len(mails) != 1 {
		t.Fatalf("e-mail log lines = %d, want 1", len(mails))
	}
	m := mails[0]
	mustEqual(t, "to", m["to"], any(user.Email))
	mustEqual(t, "name", m["name"], any("Margaret Hamilton"))
	mustEqual(t, "subject", m["subject"], any("Your order #"+itoa(created.OrderID)+" has been completed"))
	mustEqual(t, "order_id", m["order_id"], any(float64(created.OrderID)))
	mustEqual(t, "total", m["total"], any("299.97"))
	mustEqual(t, "body", m["body"], any(want))
	mustEqual(t, "duplicate log lines", len(logs.lines(t, "order completed event dropped: the customer was already notified")), 6)
}

// failingMailer fails its first n sends.
type failingMailer struct {
	mu    sync.Mutex
	fails int
	sent  []worker.Email
}

func (m *failingMailer) Send(_ context.Context, e worker.Email) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fails > 0 {
		m.fails--
		return errors.New("mail server unavailable")
	}
	m.sent = append(m.sent, e)
	return nil
}

func TestOrderCompletedMailFailureRollsBackAndRetries(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	log, _ := newLogger()
	mailer := &failingMailer{fails: 1}
	w := worker.New(s.client, log, worker.Options{Mailer: mailer})
	created, user, body := s.completedOrder(t, "John Backus")

	err := w.Handle(context.Background(), worker.Delivery{Body: body})
	if err == nil || errors.Is(err, bus.ErrPermanent) {
		t.Fatalf("handle with a failing mailer: %v, want a transient error", err)
	}
	mustEqual(t, "notifications after the failure", len(s.notifications(t, created.OrderID)), 0)
	if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
		t.Fatalf("handle redelivery: %v", err)
	}
	ns := s.notifications(t, created.OrderID)
	if len(ns) != 1 || !ns[0].IsEmailSent {
		t.Fatalf("notifications = %s, want one with the e-mail sent", describe(ns))
	}
	mustEqual(t, "e-mails", len(mailer.sent), 1)
	mustEqual(t, "e-mail recipient", mailer.sent[0].To, user.Email)
}

// interruptingMailer sends like LogMailer, then interrupts the delivery it sends for.
type interruptingMailer struct {
	worker.LogMailer
	interrupt context.CancelFunc
}

func (m interruptingMailer) Send(ctx context.Context, e worker.Email) error {
	err := m.LogMailer.Send(ctx, e)
	m.interrupt()
	return err
}

// TestOrderCompletedInterruptedAfterTheEmailCommits: a delivery interrupted (its channel
// closed) once the e-mail is out still commits its notification, so that the redelivery
// does not send the e-mail again.
func TestOrderCompletedInterruptedAfterTheEmailCommits(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	log, logs := newLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := worker.New(s.client, log, worker.Options{Mailer: interruptingMailer{worker.LogMailer{Log: log}, cancel}})
	created, _, body := s.completedOrder(t, "Frances Allen")

	if err := w.Handle(ctx, worker.Delivery{Body: body}); err != nil {
		t.Fatalf("handle: %v", err)
	}
	ns := s.notifications(t, created.OrderID)
	if len(ns) != 1 || !ns[0].IsEmailSent {
		t.Fatalf("notifications = %s, want one with the e-mail sent", describe(ns))
	}
	// The acknowledgement was lost with the channel: the redelivery sends nothing.
	if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
		t.Fatalf("handle redelivery: %v", err)
	}
	mustEqual(t, "e-mails", logs.emails(t)[created.OrderID], 1)
}

// slowMailer takes d to send each e-mail, as a mail server that answers in d, whatever its
// context says meanwhile; with interrupt set, it interrupts the delivery as it starts.
type slowMailer struct {
	d         time.Duration
	interrupt context.CancelFunc
	failingMailer
}

func (m *slowMailer) Send(ctx context.Context, e worker.Email) error {
	if m.interrupt != nil {
		m.interrupt()
	}
	time.Sleep(m.d)
	return m.failingMailer.Send(ctx, e)
}

// TestOrderCompletedEmailSentPastTheAttemptsBoundCommits: an attempt bound runs from the
// attempt's start, waiting for a connection included, so an e-mail can go out just before
// the bound passes. Its notification still commits: rolled back, the next attempt would send
// the e-mail again.
func TestOrderCompletedEmailSentPastTheAttemptsBoundCommits(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	one := s.cfg
	one.MaxConns = 1
	pool := testenv.Pool(t, one)
	log, _ := newLogger()
	mailer := &slowMailer{d: 300 * time.Millisecond}
	w := worker.New(db.NewClient(pool), log, worker.Options{Mailer: mailer})
	w.SetAttemptTimeout(time.Second)
	created, _, body := s.completedOrder(t, "Jean Sammet")
	// The pool's one connection is busy for most of the attempt's second, as under load.
	busy, err := pool.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(800*time.Millisecond, func() { busy.Close() })

	if err := w.Handle(context.Background(), worker.Delivery{Body: body}); err != nil {
		t.Fatalf("handle: %v", err)
	}
	mustEqual(t, "notifications", len(s.notifications(t, created.OrderID)), 1)
	mustEqual(t, "e-mails", len(mailer.sent), 1)
}

// TestOrderCompletedInterruptedDuringASlowSendCommits: the commit's grace after an
// interruption runs from the e-mail's sending, not from the interruption, so an e-mail that
// took longer than the grace to go out still has its notification committed, and the
// redelivery sends nothing.
func TestOrderCompletedInterruptedDuringASlowSendCommits(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	log, _ := newLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mailer := &slowMailer{d: worker.SettleGrace + 300*time.Millisecond, interrupt: cancel}
	w := worker.New(s.client, log, worker.Options{Mailer: mailer})
	created, _, body := s.completedOrder(t, "Margaret Hamilton")

	if err := w.Handle(ctx, worker.Delivery{Body: body}); err != nil {
		t.Fatalf("handle: %v", err)
	}
	mustEqual(t, "notifications", len(s.notifications(t, created.OrderID)), 1)
	// The acknowledgement was lost with the channel: the redelivery sends nothing.
	mailer.interrupt = nil
	if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
		t.Fatalf("handle redelivery: %v", err)
	}
	mustEqual(t, "e-mails", len(mailer.sent), 1)
}

func TestOrderExpiredRecordsNotificationOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0))
	user := s.newUser(t, "Frances Allen")
	created := s.newOrder(t, user, 1)
	s.setStatus(t, created.OrderID, order.StatusExpired)
	_, body := envelope(t, events.SourceCronJob, events.OrderExpired{
		OrderID: created.OrderID, UserID: user.ID, Total: created.Total, ExpiredAt: time.Now(), ExpiredAfter: "10m0s",
	})
	for i := range 4 {
		if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: i > 0}); err != nil {
			t.Fatalf("handle %d: %v", i, err)
		}
	}
	ns := s.notifications(t, created.OrderID)
	if len(ns) != 1 || ns[0].EventType != notification.EventTypeOrderExpired || ns[0].IsEmailSent {
		t.Fatalf("notifications = %s, want one OrderExpired without e-mail", describe(ns))
	}
	mustEqual(t, "notification message", ns[0].Message,
		"Your order #"+itoa(created.OrderID)+" for 99.99 has expired after 10m0s without being paid, and the reserved items have been released.")
	mustEqual(t, "recorded log lines", len(logs.lines(t, "order expiry recorded")), 1)
	mustEqual(t, "e-mails", len(logs.emails(t)), 0)
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusExpired)
}

func TestUnhandleableMessagesArePermanentFailures(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, _ := newWorker(s, always(0))
	bodies := map[string]string{
		"not JSON":     `{"specversion":`,
		"unknown type": `{"specversion":"1.0","id":"x","source":"orderflow/api","type":"orderflow.order.unknown.v1","time":"2026-12-01T00:00:00Z","datacontenttype":"application/json","data":{}}`,
		"missing data": `{"specversion":"1.0","id":"x","source":"orderflow/api","type":"orderflow.order.created.v1","time":"2026-12-01T00:00:00Z","datacontenttype":"application/json"}`,
		"bad payload":  `{"specversion":"1.0","id":"x","source":"orderflow/api","type":"orderflow.order.completed.v1","time":"2026-12-01T00:00:00Z","datacontenttype":"application/json","data":{"orderId":"seven"}}`,
	}
	for name, body := range bodies {
		err := w.Handle(context.Background(), worker.Delivery{Body: []byte(body)})
		if !errors.Is(err, bus.ErrPermanent) {
			t.Errorf("%s: error %v, want one wrapping bus.ErrPermanent", name, err)
		}
	}
}

func TestDatabaseOutageIsTransient(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	user := s.newUser(t, "Tony Hoare")
	created := s.newOrder(t, user, 1)

	// A worker whose database is unreachable: every event fails, none permanently.
	down := s.cfg
	down.Port = unusedPort(t)
	downPool := openUnchecked(t, down)
	log, logs := newLogger()
	broken := worker.New(downPool, log, worker.Options{PaymentDelay: time.Millisecond, CompletionProbability: 1})
	_, createdBody := envelope(t, events.SourceAPI, created)
	_, completedBody := envelope(t, events.SourceWorker, events.OrderCompleted{
		OrderID: created.OrderID, UserID: user.ID, Total: created.Total, CompletedAt: time.Now(),
	})
	_, expiredBody := envelope(t, events.SourceCronJob, events.OrderExpired{
		OrderID: created.OrderID, UserID: user.ID, Total: created.Total, ExpiredAt: time.Now(), ExpiredAfter: "10m0s",
	})
	// Handlers wait for the database, keeping their message, until they are stopped; then
	// they fail without marking the message permanent, so it is requeued.
	for _, body := range [][]byte{createdBody, completedBody, expiredBody} {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		err := broken.Handle(ctx, worker.Delivery{Body: body})
		cancel()
		if err == nil || errors.Is(err, bus.ErrPermanent) {
			t.Fatalf("handle without a database: %v, want a transient error", err)
		}
	}
	mustEqual(t, "outage log lines", len(logs.lines(t, "database unavailable: handlers keep their messages and retry")), 1)
	mustEqual(t, "status while the database is down", s.status(t, created.OrderID), order.StatusPending)

	// The database is back: the redelivered events are handled as if nothing happened.
	w := worker.New(s.client, log, worker.Options{PaymentDelay: time.Millisecond, CompletionProbability: 1})
	for _, body := range [][]byte{createdBody, completedBody} {
		if err := w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: true}); err != nil {
			t.Fatalf("handle after the outage: %v", err)
		}
	}
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusCompleted)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 1)
	mustEqual(t, "e-mails", logs.emails(t)[created.OrderID], 1)
}

func money(s string) events.Money {
	var m events.Money
	if err := m.UnmarshalJSON([]byte(s)); err != nil {
		panic(err)
	}
	return m
}

// TestEveryEventHasAHandler: every event type that Decode knows reaches a handler of its own
// instead of the dead-letter queue as "no handler for event type". The events name no
// existing order, which every handler drops.
func TestEveryEventHasAHandler(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, _ := newWorker(s, always(0.1))
	for _, e := range events.All() {
		env, err := events.NewEnvelopeWithoutData(uuid.NewString(), events.SourceAPI, e.Type(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Dispatch(context.Background(), env, e); errors.Is(err, worker.ErrNoHandler) {
			t.Errorf("%s: %v; add its case to Worker.dispatch", e.Name(), err)
		}
	}
}

// TestACompletionWhoseAnswerWasLostIsCountedAsCompleted: when the database stops answering on
// a connection while a completion commits (a failover), the commit may go through unseen; the
// attempt after it finds the order completed, which it did itself, and the payment counts as
// completed, not as too late.
func TestACompletionWhoseAnswerWasLostIsCountedAsCompleted(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	// The completion's commit waits a second, so that the connection is lost while it runs.
	_, err := s.client.ExecContext(context.Background(), `
		CREATE FUNCTION slow_completion() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER slow_completion AFTER UPDATE ON orders
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status = 'completed')
		EXECUTE FUNCTION slow_completion()`)
	if err != nil {
		t.Fatal(err)
	}
	px := testutil.StartProxy(t, net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)))
	viaProxy := s.cfg
	viaProxy.Host, viaProxy.Port = "127.0.0.1", px.Port()
	log, logs := newLogger()
	w := worker.New(openUnchecked(t, viaProxy), log, worker.Options{
		PaymentDelay: 10 * time.Millisecond, CompletionProbability: 0.5, Random: always(0.1),
	})
	w.SetAttemptTimeout(2 * time.Second)
	created := s.newOrder(t, s.newUser(t, "Leslie Lamport"), 1)
	_, body := envelope(t, events.SourceAPI, created)

	done := make(chan error, 1)
	go func() { done <- w.Handle(context.Background(), worker.Delivery{Body: body}) }()
	testutil.Eventually(t, 10*time.Second, "the completion committing", func() bool {
		rows, err := s.client.QueryContext(context.Background(), `SELECT FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event = 'PgSleep'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		return rows.Next()
	})
	// The commit completes; its answer goes nowhere, and the attempt gives up after 2 s.
	px.Strand()
	if err := <-done; err != nil {
		t.Fatalf("handle: %v", err)
	}
	mustEqual(t, "status", s.status(t, created.OrderID), order.StatusCompleted)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, created.OrderID)), 1)
	mustEqual(t, "completed log lines", len(logs.lines(t, msgCompleted)), 1)
	mustEqual(t, "too late log lines", len(logs.lines(t, msgTooLate)), 0)
}
