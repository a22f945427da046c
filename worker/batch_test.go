package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"orderflow/ent/order"
	entoutbox "orderflow/ent/outbox"
	"orderflow/events"
	"orderflow/internal/testutil"
	"orderflow/platform/bus"
	"orderflow/platform/log"
	"orderflow/worker"
)

// TestOrderCreatedClaimsOfConcurrentDeliveriesShareAStatement: the orders of OrderCreated
// events handled at once are claimed (pending -> processing) in one statement, each once,
// even when an event is delivered twice at the same time; each claimed order is paid once.
func TestOrderCreatedClaimsOfConcurrentDeliveriesShareAStatement(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	draws := &counted{r: always(0.9)} // declined: the orders stay as the claim left them
	w, logs := newWorker(s, draws.draw)
	user := s.newUser(t, "Barbara Liskov")
	var ids []int
	var bodies [][]byte
	for range 5 {
		created := s.newOrder(t, user, 1)
		_, body := envelope(t, events.SourceAPI, created)
		ids, bodies = append(ids, created.OrderID), append(bodies, body)
	}
	bodies = append(bodies, bodies[2])

	waiting, release := w.HoldClaimWriter()
	errs := make(chan error, len(bodies))
	for _, body := range bodies {
		go func() { errs <- w.Handle(context.Background(), worker.Delivery{Body: body}) }()
	}
	testutil.Eventually(t, 5*time.Second, "every claim waiting", func() bool { return waiting() == len(bodies) })
	release()
	waitAll(t, errs, len(bodies), 10*time.Second, "handlers")

	for _, id := range ids {
		mustEqual(t, "status", s.status(t, id), order.StatusProcessing)
	}
	orders, transactions := s.transactions(t, "orders", "id", ids)
	if orders != 5 || transactions != 1 {
		t.Fatalf("%d orders claimed in %d transactions, want 5 in 1", orders, transactions)
	}
	mustEqual(t, "payments drawn", draws.count(), 5)
	mustEqual(t, "declined log lines", len(logs.lines(t, "payment declined: the order stays processing until it expires")), 5)
	mustEqual(t, "dropped log lines", len(logs.lines(t, "order created event dropped: the order is no longer pending")), 1)
}

// TestPaymentsThatSucceedAtOnceCompleteInOneTransaction: the orders whose payments succeed at
// once are completed in one transaction, each with its one OrderCompleted event, which
// carries the request id of its own delivery.
func TestPaymentsThatSucceedAtOnceCompleteInOneTransaction(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0.1))
	user := s.newUser(t, "Jim Gray")
	var ids []int
	var bodies [][]byte
	for range 4 {
		created := s.newOrder(t, user, 1)
		_, body := envelope(t, events.SourceAPI, created)
		ids, bodies = append(ids, created.OrderID), append(bodies, body)
	}

	waiting, release := w.HoldCompletionWriter()
	errs := make(chan error, len(bodies))
	for i, body := range bodies {
		ctx := log.WithRequestID(context.Background(), fmt.Sprintf("req-%d", ids[i]))
		go func() { errs <- w.Handle(ctx, worker.Delivery{Body: body}) }()
	}
	testutil.Eventually(t, 5*time.Second, "every completion waiting", func() bool { return waiting() == len(bodies) })
	release()
	waitAll(t, errs, len(bodies), 10*time.Second, "handlers")

	orders, transactions := s.transactions(t, "orders", "id", ids)
	if orders != 4 || transactions != 1 {
		t.Fatalf("%d orders completed in %d transactions, want 4 in 1", orders, transactions)
	}
	for _, id := range ids {
		mustEqual(t, "status", s.status(t, id), order.StatusCompleted)
		mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, id)), 1)
	}
	rows := s.client.Outbox.Query().Where(entoutbox.EventType(events.TypeOrderCompleted)).AllX(context.Background())
	for _, r := range rows {
		_, ev, err := events.Decode(r.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("req-%d", ev.(events.OrderCompleted).OrderID); r.Headers[bus.HeaderRequestID] != want {
			t.Errorf("event of order %d: request id %q, want %q", ev.(events.OrderCompleted).OrderID, r.Headers[bus.HeaderRequestID], want)
		}
	}
	mustEqual(t, "completed log lines", len(logs.lines(t, "payment succeeded: order completed")), 4)
}

// refusingMailer sends like LogMailer, except to the customer of one order.
type refusingMailer struct {
	worker.LogMailer
	refuse int
}

func (m refusingMailer) Send(ctx context.Context, e worker.Email) error {
	if e.OrderID == m.refuse {
		return errors.New("mailbox full")
	}
	return m.LogMailer.Send(ctx, e)
}

// TestOrderCompletedNotificationsOfConcurrentDeliveriesShareATransaction: the notifications
// of OrderCompleted events handled at once are recorded in one transaction, each e-mail sent
// once, even when an event is delivered twice at the same time. An order that no longer
// exists and an e-mail that fails fail their own events only: the failed one's notification
// is not kept, so that its redelivery sends it.
func TestOrderCompletedNotificationsOfConcurrentDeliveriesShareATransaction(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	log, logs := newLogger()
	user := s.newUser(t, "Edsger Dijkstra")
	var ids []int
	var bodies [][]byte
	for range 4 {
		created := s.newOrder(t, user, 1)
		s.setStatus(t, created.OrderID, order.StatusCompleted)
		ids = append(ids, created.OrderID)
	}
	const missing = 987654
	w := worker.New(s.client, log, worker.Options{Mailer: refusingMailer{worker.LogMailer{Log: log}, ids[1]}})
	for _, id := range append(slices.Clone(ids), ids[0], missing) {
		_, body := envelope(t, events.SourceWorker, events.OrderCompleted{
			OrderID: id, UserID: user.ID, Total: money("99.99"), CompletedAt: time.Now(),
		})
		bodies = append(bodies, body)
	}

	waiting, release := w.HoldNotificationWriter()
	errs := make([]chan error, len(bodies))
	for i, body := range bodies {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- w.Handle(context.Background(), worker.Delivery{Body: body}) }()
	}
	testutil.Eventually(t, 5*time.Second, "every notification waiting", func() bool { return waiting() == len(bodies) })
	release()
	for i := range bodies {
		select {
		case err := <-errs[i]:
			if i == 1 && (err == nil || errors.Is(err, bus.ErrPermanent) || !strings.Contains(err.Error(), "mailbox full")) {
				t.Errorf("handler of the refused e-mail: %v, want the mailer's error, to be retried", err)
			}
			if i != 1 && err != nil {
				t.Errorf("handler %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("handler %d still waiting", i)
		}
	}

	notified := []int{ids[0], ids[2], ids[3]}
	notes, transactions := s.transactions(t, "notifications", "order_id", notified)
	if notes != 3 || transactions != 1 {
		t.Fatalf("%d notifications in %d transactions, want 3 in 1", notes, transactions)
	}
	for _, id := range notified {
		if ns := s.notifications(t, id); len(ns) != 1 || !ns[0].IsEmailSent {
			t.Errorf("order %d: notifications %s, want one with its e-mail sent", id, describe(ns))
		}
	}
	mustEqual(t, "notifications of the refused e-mail", len(s.notifications(t, ids[1])), 0)
	mustEqual(t, "e-mails", fmt.Sprint(logs.emails(t)), fmt.Sprint(map[int]int{ids[0]: 1, ids[2]: 1, ids[3]: 1}))
	mustEqual(t, "duplicate log lines", len(logs.lines(t, "order completed event dropped: the customer was already notified")), 1)
	mustEqual(t, "missing order log lines", len(logs.lines(t, "order completed event dropped: the order no longer exists")), 1)
}
