package worker_test

import (
	"context"
	"fmt"
	"testing"

	"orderflow/ent/order"
	entoutbox "orderflow/ent/outbox"
	"orderflow/events"
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
	draws := &counted{r: always(0.9)} // declined: the orders stay as the claim left them
	w, logs := newWorker(s, draws.draw)
	ids, bodies := s.newOrderEvents(t, "Barbara Liskov", 5)
	bodies = append(bodies, bodies[2])
	handleWhileHeld(t, w.HoldClaimWriter, len(bodies), func(i int) error {
		return w.Handle(context.Background(), worker.Delivery{Body: bodies[i]})
	})

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
