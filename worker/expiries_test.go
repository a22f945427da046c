package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"orderflow/events"
	"orderflow/internal/testutil"
	"orderflow/worker"
)

// handleWhileHeld starts handle(i) for each i in [0, n) at once while the writer that hold
// holds is busy, waits until all n wait for it, then lets it go; every handler must succeed.
func handleWhileHeld(t *testing.T, hold func() (waiting func() int, release func()), n int, handle func(i int) error) {
	t.Helper()
	waiting, release := hold()
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- handle(i) }()
	}
	testutil.Eventually(t, 5*time.Second, "every handler waiting", func() bool { return waiting() == n })
	release()
	waitAll(t, errs, n, 10*time.Second, "handlers")
}

// expireAll delivers an OrderExpired event for each of orderIDs at once, while the
// notifications' writer is held, then lets the writer go; every handler must succeed.
func expireAll(t *testing.T, w *worker.Worker, orderIDs ...int) {
	t.Helper()
	handleWhileHeld(t, w.HoldExpiryWriter, len(orderIDs), func(i int) error {
		_, body := envelope(t, events.SourceCronJob, events.OrderExpired{
			OrderID: orderIDs[i], UserID: 1, Total: money("99.99"), ExpiredAt: time.Now(), ExpiredAfter: "10m0s",
		})
		return w.Handle(context.Background(), worker.Delivery{Body: body, Redelivered: i > 0})
	})
}

// transactions counts the rows of table whose column is one of ids, and the transactions
// that last wrote them.
func (s *store) transactions(t *testing.T, table, column string, ids []int) (rows, transactions int) {
	t.Helper()
	res, err := s.client.QueryContext(context.Background(), fmt.Sprintf(
		`SELECT count(*), count(DISTINCT xmin::text) FROM %s WHERE %s = ANY($1)`, table, column), ids)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if !res.Next() {
		t.Fatal("no count")
	}
	if err := res.Scan(&rows, &transactions); err != nil {
		t.Fatal(err)
	}
	return rows, transactions
}

// TestOrderExpiredNotificationsOfConcurrentDeliveriesShareAStatement: the notifications of
// events handled at once are inserted in one statement, each once, even when an event is
// delivered twice at the same time.
func TestOrderExpiredNotificationsOfConcurrentDeliveriesShareAStatement(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0))
	ids := s.newOrders(t, 5)
	expireAll(t, w, append(ids, ids[2])...)
	notes, transactions := s.transactions(t, "notifications", "order_id", ids)
	if notes != 5 || transactions != 1 {
		t.Fatalf("%d notifications in %d transactions, want 5 in 1", notes, transactions)
	}
	mustEqual(t, "recorded log lines", len(logs.lines(t, "order expiry recorded")), 5)
	mustEqual(t, "duplicate log lines", len(logs.lines(t, "order expired event dropped: the expiry was already recorded")), 1)
}

// TestOrderExpiredNotificationsFallBackToOneEach: an order that no longer exists fails the
// statement of the notifications handled with it; each handler then inserts its own, and
// the missing order's event is dropped alone.
func TestOrderExpiredNotificationsFallBackToOneEach(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0))
	ids := s.newOrders(t, 4)
	const missing = 987654
	expireAll(t, w, append(ids, missing)...)
	notes, transactions := s.transactions(t, "notifications", "order_id", ids)
	if notes != 4 || transactions != 4 {
		t.Fatalf("%d notifications in %d transactions, want 4 in 4 (each by itself)", notes, transactions)
	}
	mustEqual(t, "recorded log lines", len(logs.lines(t, "order expiry recorded")), 4)
	mustEqual(t, "dropped log lines", len(logs.lines(t, "order expired event dropped: the order no longer exists")), 1)
}

// TestOrderExpiredFallbackRecordsADuplicateOnce: when the shared statement fails (an order
// no longer exists) and each handler inserts its own notification, a copy of an event
// delivered at the same time still records nothing.
func TestOrderExpiredFallbackRecordsADuplicateOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w, logs := newWorker(s, always(0))
	ids := s.newOrders(t, 3)
	const missing = 987654
	expireAll(t, w, append(ids, missing, ids[0])...)
	notes, transactions := s.transactions(t, "notifications", "order_id", ids)
	if notes != 3 || transactions != 3 {
		t.Fatalf("%d notifications in %d transactions, want 3 in 3 (each by itself)", notes, transactions)
	}
	mustEqual(t, "recorded log lines", len(logs.lines(t, "order expiry recorded")), 3)
	mustEqual(t, "duplicate log lines", len(logs.lines(t, "order expired event dropped: the expiry was already recorded")), 1)
}
