package worker_test

import (
	"context"
	"fmt"
	"sync/atomic"
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

// newOrderEvents inserts n pending orders of a new customer called name, and returns their
// ids and the bodies of their OrderCreated events.
func (s *store) newOrderEvents(t *testing.T, name string, n int) (ids []int, bodies [][]byte) {
	t.Helper()
	user := s.newUser(t, name)
	for range n {
		created := s.newOrder(t, user, 1)
		_, body := envelope(t, events.SourceAPI, created)
		ids, bodies = append(ids, created.OrderID), append(bodies, body)
	}
	return ids, bodies
}

// TestOrderCreatedClaimsOfConcurrentDeliveriesShareAStatement: the orders of OrderCreated
// events handled at once are claimed (pending -> processing) in one statement, each once,
// even when an event is delivered twice at the same time; each claimed order is paid once.
func TestOrderCreatedClaimsOfConcurrentDeliveriesShareAStatement(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	draws := &counted{r: always(0.9)} // declined: the orders stay processing
	w, logs := newWorker(s, draws.draw)
	ids, bodies := s.newOrderEvents(t, "Barbara Liskov", 5)
	bodies = append(bodies, bodies[2])
	claims, releaseClaims := w.HoldClaimWriter()
	declines, releaseDeclines := w.HoldDeclineWriter()
	errs := make(chan error, len(bodies))
	for _, body := range bodies {
		go func() { errs <- w.Handle(context.Background(), worker.Delivery{Body: body}) }()
	}
	testutil.Eventually(t, 5*time.Second, "every claim waiting", func() bool { return claims() == len(bodies) })
	releaseClaims()
	// The declines are held, so that the orders' rows are as the claims left them.
	testutil.Eventually(t, 5*time.Second, "every payment declined", func() bool { return declines() == len(ids) })
	orders, transactions := s.transactions(t, "orders", "id", ids)
	releaseDeclines()
	waitAll(t, errs, len(bodies), 10*time.Second, "handlers")
	if orders != 5 || transactions != 1 {
		t.Fatalf("%d orders claimed in %d transactions, want 5 in 1", orders, transactions)
	}
	for _, id := range ids {
		mustEqual(t, "status", s.status(t, id), order.StatusProcessing)
	}
	mustEqual(t, "payments drawn", draws.count(), 5)
	mustEqual(t, "declined log lines", len(logs.lines(t, "payment declined: the order stays processing until it expires")), 5)
	mustEqual(t, "dropped log lines", len(logs.lines(t, "order created event dropped: the order is no longer pending")), 1)
}

// TestPaymentBesideADeclinedOneDoesNotComplete: two deliveries of an OrderCreated pay at
// once (the second a redelivery that found the order processing); the first payment is
// declined, and once its decline is recorded the second one's success completes nothing.
func TestPaymentBesideADeclinedOneDoesNotComplete(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	var draws atomic.Int32
	w, logs := newWorker(s, func(int) float64 {
		if draws.Add(1) == 1 {
			return 0.9 // the first payment: declined
		}
		return 0.1 // the second: succeeded
	})
	ids, bodies := s.newOrderEvents(t, "Edsger Dijkstra", 1)
	declines, releaseDeclines := w.HoldDeclineWriter()
	completions, releaseCompletions := w.HoldCompletionWriter()
	errs := make(chan error, 2)
	go func() { errs <- w.Handle(context.Background(), worker.Delivery{Body: bodies[0]}) }()
	testutil.Eventually(t, 5*time.Second, "the first payment declined", func() bool { return declines() == 1 })
	go func() { errs <- w.Handle(context.Background(), worker.Delivery{Body: bodies[0], Redelivered: true}) }()
	testutil.Eventually(t, 5*time.Second, "the second payment succeeded", func() bool { return completions() == 1 })
	releaseDeclines()
	testutil.Eventually(t, 5*time.Second, "the decline recorded", func() bool {
		return len(logs.lines(t, "payment declined: the order stays processing until it expires")) == 1
	})
	releaseCompletions()
	waitAll(t, errs, 2, 10*time.Second, "handlers")

	mustEqual(t, "status", s.status(t, ids[0]), order.StatusProcessing)
	mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, ids[0])), 0)
	mustEqual(t, "too-late log lines",
		len(logs.lines(t, "payment succeeded but another payment of the order was declined first: nothing to complete")), 1)
}

// TestDeclineOfAnOrderNoLongerProcessingRecordsNothing: an order expired while its payment
// ran keeps its status, and its declined payment is not recorded on it.
func TestDeclineOfAnOrderNoLongerProcessingRecordsNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0.9))
	ids, bodies := s.newOrderEvents(t, "Tony Hoare", 1)
	declines, releaseDeclines := w.HoldDeclineWriter()
	errs := make(chan error, 1)
	go func() { errs <- w.Handle(context.Background(), worker.Delivery{Body: bodies[0]}) }()
	testutil.Eventually(t, 5*time.Second, "the payment declined", func() bool { return declines() == 1 })
	if err := s.client.Order.UpdateOneID(ids[0]).SetStatus(order.StatusExpired).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	releaseDeclines()
	waitAll(t, errs, 1, 10*time.Second, "handler")

	o, err := s.client.Order.Get(context.Background(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != order.StatusExpired || o.PaymentDeclinedAt != nil {
		t.Errorf("order %s, declined at %v; want expired, no decline recorded", o.Status, o.PaymentDeclinedAt)
	}
	mustEqual(t, "nothing-to-record log lines",
		len(logs.lines(t, "payment declined, and the order is no longer processing or has its decline recorded already: nothing to record")), 1)
}

// TestPaymentsThatSucceedAtOnceCompleteInOneTransaction: the orders whose payments succeed at
// once are completed in one transaction, each with its one OrderCompleted event, which
// carries the request id of its own delivery.
func TestPaymentsThatSucceedAtOnceCompleteInOneTransaction(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0.1))
	ids, bodies := s.newOrderEvents(t, "Jim Gray", 4)
	handleWhileHeld(t, w.HoldCompletionWriter, len(bodies), func(i int) error {
		ctx := log.WithRequestID(context.Background(), fmt.Sprintf("req-%d", ids[i]))
		return w.Handle(ctx, worker.Delivery{Body: bodies[i]})
	})

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

// TestOneOrderThatCannotCompleteLeavesTheOthersOfItsGroupCompleted: when the transaction of
// the completions that end at once fails for one order's sake (here its event, whose request
// id PostgreSQL cannot store), the others complete by themselves, each once, instead of
// failing with it and having their payments drawn again on redelivery.
func TestOneOrderThatCannotCompleteLeavesTheOthersOfItsGroupCompleted(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0.1))
	ids, bodies := s.newOrderEvents(t, "Barbara Liskov", 3)
	errs := make([]error, len(ids))
	handleWhileHeld(t, w.HoldCompletionWriter, len(bodies), func(i int) error {
		id := fmt.Sprintf("req-%d", ids[i])
		if i == 0 {
			id = "req\x00nul" // jsonb has no NUL: the event's headers fail the insert
		}
		errs[i] = w.Handle(log.WithRequestID(context.Background(), id), worker.Delivery{Body: bodies[i]})
		return nil
	})

	if errs[0] == nil {
		t.Error("the order whose event cannot be stored was answered as completed")
	}
	mustEqual(t, "status of the order that could not complete", s.status(t, ids[0]), order.StatusProcessing)
	for i, id := range ids[1:] {
		if errs[i+1] != nil {
			t.Errorf("order %d: %v", id, errs[i+1])
		}
		mustEqual(t, "status", s.status(t, id), order.StatusCompleted)
		mustEqual(t, "OrderCompleted events", len(s.completedEvents(t, id)), 1)
	}
	mustEqual(t, "completed log lines", len(logs.lines(t, "payment succeeded: order completed")), 2)
	// The three were tried together first.
	mustEqual(t, "groups completed order by order", len(logs.lines(t, "completing orders together failed, each is completed by itself")), 1)
}
