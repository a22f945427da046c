package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"time"

	"orderflow/ent"
	"orderflow/ent/order"
	entoutbox "orderflow/ent/outbox"
	"orderflow/events"
	"orderflow/platform/bus"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
)

// RandomSource returns a number in [0, 1) for the payment of the given order. Taking the
// order id lets tests decide each order's payment; DefaultRandom ignores it.
type RandomSource func(orderID int) float64

// DefaultRandom draws uniformly from math/rand/v2's global source, which is safe for
// concurrent use.
func DefaultRandom(int) float64 { return rand.Float64() }

// handleOrderCreated takes a new order through its payment: pending -> processing (a
// conditional update), the simulated payment of Options.PaymentDelay, and with
// Options.CompletionProbability processing -> completed together with an OrderCompleted
// outbox row, in one transaction. A declined payment is recorded on the order
// (payment_declined_at), which stays processing for the cron job to expire.
//
// When the order is not pending, the event is a duplicate or stale and is dropped, with two
// exceptions, in which the payment runs: an order found processing on a redelivery
// (redelivered is the broker's flag, or the message was moved back from its dead-letter
// queue) had its payment interrupted before a decision, and one
// found processing after a claim that may have committed unseen (the connection dropped, or
// gave no answer, after the update was sent) may be this delivery's own; unless an
// administrator moved the order to processing (processing_by_admin_at), or a decline is
// recorded, which no later payment overrides. The conditional completion keeps a second
// completion, and one after a decline, impossible. See the README, "An order found in
// processing on redelivery".
//
// The payment's wait is returned as bus.After, so that a payment in flight holds a timer
// instead of a goroutine: the consumer calls the rest once the wait is over, and Handle
// waits it out with bus.Finish. A payment interrupted by ctx returns an error, so the
// message is not acknowledged. Once the payment has succeeded, its completion is recorded
// even if ctx ends meanwhile (see settling).
func (w *Worker) handleOrderCreated(ctx context.Context, env events.Envelope, e events.OrderCreated, redelivered bool) error {
	log := w.log.With(slog.Int("order_id", e.OrderID), slog.String("event_id", env.ID))
	pay, err := w.startPayment(ctx, log, e.OrderID, redelivered)
	if err != nil || !pay {
		return err
	}
	w.inFlight.Add(1)
	paymentsInFlight.Inc()
	return bus.After(w.opts.PaymentDelay, func(ctx context.Context) error {
		paymentsInFlight.Dec()
		w.inFlight.Add(-1)
		if ctx.Err() != nil {
			payments.WithLabelValues("interrupted").Inc()
			return fmt.Errorf("payment of order %d interrupted: %w", e.OrderID, context.Cause(ctx))
		}
		return w.finishPayment(ctx, log, e)
	})
}

// finishPayment draws the outcome of the order's payment, once its wait is over, and records
// a success: the order completed with its OrderCompleted event.
func (w *Worker) finishPayment(ctx context.Context, log *slog.Logger, e events.OrderCreated) error {
	if !w.paymentSucceeds(e.OrderID) {
		var recorded bool
		err := w.retry(ctx, func(ctx context.Context) error {
			settle, done := settling(ctx)
			defer done()
			var err error
			recorded, err = w.decline(settle, e.OrderID)
			return err
		})
		if err != nil {
			return err
		}
		payments.WithLabelValues("declined").Inc()
		if !recorded {
			log.InfoContext(ctx, "payment declined, and the order is no longer processing or has its decline recorded already: nothing to record")
			return nil
		}
		log.InfoContext(ctx, "payment declined: the order stays processing until it expires")
		return nil
	}
	// The event is made once, before the attempts, so that its row tells whether an attempt
	// that failed after its statements were sent completed the order after all. It carries
	// this delivery's request id and trace.
	row, err := outbox.NewRow(ctx, events.SourceWorker, events.OrderCompleted{
		OrderID:     e.OrderID,
		UserID:      e.UserID,
		Total:       e.Total,
		CompletedAt: time.Now().UTC(),
	}, nil)
	if err != nil {
		return fmt.Errorf("complete order %d: %w", e.OrderID, err)
	}
	var completed, uncertain bool
	err = w.retry(ctx, func(ctx context.Context) error {
		settle, done := settling(ctx)
		defer done()
		var err error
		completed, err = w.complete(settle, e.OrderID, row)
		uncertain = uncertain || (err != nil && !changedNothing(err))
		return err
	})
	if err == nil && !completed && uncertain {
		// The order found no longer processing may be this delivery's own doing: its commit
		// went through, and the answer was lost with the connection.
		err = w.retry(ctx, func(ctx context.Context) error {
			var err error
			completed, err = w.client.Outbox.Query().Where(entoutbox.EventID(row.EventID)).Exist(ctx)
			return err
		})
	}
	if err != nil {
		return err
	}
	if !completed {
		payments.WithLabelValues("too_late").Inc()
		// An order deleted during its payment (an administrator's DELETE) is told apart from
		// one that moved on, for whoever looks for it in the log.
		st, err := w.state(ctx, e.OrderID)
		switch {
		case errors.Is(err, errOrderGone):
			log.WarnContext(ctx, "payment succeeded but the order no longer exists: nothing to complete")
		case err == nil && st.status == order.StatusProcessing && st.declined:
			log.InfoContext(ctx, "payment succeeded but another payment of the order was declined first: nothing to complete")
		default:
			// The status read only tells why; without it the line says why it has none.
			seen := slog.String("status", string(st.status))
			if err != nil {
				seen = slog.Any("status_error", err)
			}
			log.InfoContext(ctx, "payment succeeded but the order is no longer processing: nothing to complete", seen)
		}
		return nil
	}
	payments.WithLabelValues("completed").Inc()
	log.InfoContext(ctx, "payment succeeded: order completed", slog.String("total", e.Total.StringFixed(2)))
	return nil
}

// startPayment claims the order for its payment (pending -> processing) and tells whether
// this delivery runs the payment: it does when it claimed the order, or when it finds the
// order processing with its payment interrupted and not declined, and not moved there by an
// administrator (see handleOrderCreated).
// It logs why it does not, when it does not.
func (w *Worker) startPayment(ctx context.Context, log *slog.Logger, orderID int, redelivered bool) (bool, error) {
	// uncertain: an attempt to claim the order failed in a way that may have committed it
	// (the connection dropped, or gave no answer within attemptTimeout, after the update was
	// sent), so processing may be this delivery's own doing. An attempt that never reached
	// the database (no connection) changed nothing: a copy of the event may have claimed the
	// order meanwhile.
	var claimed, uncertain bool
	err := w.retry(ctx, func(ctx context.Context) error {
		var err error
		claimed, err = w.claim(ctx, orderID)
		uncertain = uncertain || (err != nil && !changedNothing(err))
		return err
	})
	if err != nil || claimed {
		return claimed, err
	}
	var st paymentState
	err = w.retry(ctx, func(ctx context.Context) error {
		var err error
		st, err = w.state(ctx, orderID)
		return err
	})
	switch {
	case errors.Is(err, errOrderGone):
		log.WarnContext(ctx, "order created event dropped: the order no longer exists")
		return false, nil
	case err != nil:
		return false, err
	case st.status == order.StatusProcessing && (redelivered || uncertain) && st.declined:
		log.InfoContext(ctx, "order created event dropped: the order's payment was declined before",
			slog.Bool("redelivered", redelivered))
		return false, nil
	case st.status == order.StatusProcessing && st.byAdmin:
		log.InfoContext(ctx, "order created event dropped: an administrator moved the order to processing, and its payment is theirs",
			slog.Bool("redelivered", redelivered))
		return false, nil
	case st.status == order.StatusProcessing && (redelivered || uncertain):
		log.InfoContext(ctx, "resuming a payment interrupted before its outcome")
		return true, nil
	default:
		log.InfoContext(ctx, "order created event dropped: the order is no longer pending",
			slog.String("status", string(st.status)), slog.Bool("redelivered", redelivered))
		return false, nil
	}
}

// paymentSucceeds draws the outcome of an order's payment.
func (w *Worker) paymentSucceeds(orderID int) bool {
	return w.opts.Random(orderID) < w.opts.CompletionProbability
}

// PaymentsInFlight returns the number of simulated payments running right now.
func (w *Worker) PaymentsInFlight() int64 { return w.inFlight.Load() }

// claim moves the order from pending to processing and reports whether it did. The orders
// of the handlers that claim at once are claimed together (newClaims).
func (w *Worker) claim(ctx context.Context, orderID int) (bool, error) {
	claimed, err := w.claims.do(ctx, orderID, struct{}{})
	if err != nil {
		return false, fmt.Errorf("start processing order %d: %w", orderID, err)
	}
	return claimed, nil
}

// maxClaims is the most orders one statement claims.
const maxClaims = 500

// newClaims returns the batch that claims the orders of the OrderCreated handlers that run at
// once, up to maxClaims in one statement: a burst of new orders then costs the database a
// statement and a commit for many orders instead of one each.
func newClaims(w *Worker) *orderBatch[struct{}] {
	return newOrderUpdates(w, maxClaims, "claim", claimOrders,
		string(order.StatusPending), string(order.StatusProcessing))
}

// newOrderUpdates returns a batch that runs update, a statement that changes the orders of
// $1 (with args from $2 on) and returns the ids of those it changed; what names it in an
// error ("claim %d orders").
func newOrderUpdates(w *Worker, max int, what, update string, args ...any) *orderBatch[struct{}] {
	return newOrderBatch(w, max, func(ctx context.Context, items []*batchItem[struct{}]) (map[int]bool, error) {
		changed, err := orderIDs(w.client.QueryContext(ctx, update, append([]any{orderIDsOf(items)}, args...)...))
		if err != nil {
			return nil, fmt.Errorf("%s %d orders: %w", what, len(items), err)
		}
		return changed, nil
	})
}

// claimOrders moves the orders of $1 whose status is $2 (pending) to status $3 (processing)
// and returns the ones it moved.
const claimOrders = `UPDATE orders SET status = $3, updated_at = now()
WHERE id = ANY($1) AND status = $2
RETURNING id`

// completeOrders is the same move for a completion (processing -> completed), which leaves
// an order whose payment was declined: a payment that ran beside the declined one (two
// deliveries of its OrderCreated at once) does not complete it.
const completeOrders = `UPDATE orders SET status = $3, updated_at = now()
WHERE id = ANY($1) AND status = $2 AND payment_declined_at IS NULL
RETURNING id`

// paymentState is what the worker reads of an order for its payment.
type paymentState struct {
	status order.Status
	// byAdmin: an administrator moved the order to processing (processing_by_admin_at), and
	// its payment is theirs.
	byAdmin bool
	// declined: a payment of the order was declined (payment_declined_at).
	declined bool
}

// state reads the order's paymentState, or returns errOrderGone.
func (w *Worker) state(ctx context.Context, orderID int) (paymentState, error) {
	o, err := w.client.Order.Query().Where(order.ID(orderID)).
		Select(order.FieldStatus, order.FieldProcessingByAdminAt, order.FieldPaymentDeclinedAt).Only(ctx)
	if ent.IsNotFound(err) {
		return paymentState{}, errOrderGone
	}
	if err != nil {
		return paymentState{}, fmt.Errorf("read status of order %d: %w", orderID, err)
	}
	return paymentState{status: o.Status, byAdmin: o.ProcessingByAdminAt != nil, declined: o.PaymentDeclinedAt != nil}, nil
}

// complete moves the order from processing to completed and writes its OrderCompleted
// event (row), in one transaction. It reports false, and writes nothing, when the order is no
// longer processing (expired meanwhile, completed by another delivery, or deleted) or
// another delivery declined its payment. The orders of the payments that complete at once
// are completed together (newCompletions).
func (w *Worker) complete(ctx context.Context, orderID int, row outbox.Row) (bool, error) {
	completed, err := w.completions.do(ctx, orderID, row)
	if err != nil {
		return false, fmt.Errorf("complete order %d: %w", orderID, err)
	}
	return completed, nil
}

// maxCompletions is the most orders one transaction completes.
const maxCompletions = 500

// newCompletions returns the batch that completes the orders of the payments that succeed at
// once, up to maxCompletions in one transaction: the orders still processing become
// completed, and the OrderCompleted event of each is written to the outbox. The payments of a
// burst of new orders end together, 5 s after it.
func newCompletions(w *Worker) *orderBatch[outbox.Row] {
	return newOrderBatch(w, maxCompletions, w.storeCompletions)
}

// storeCompletions completes the orders of items that are still processing, and writes their
// OrderCompleted events, in one transaction (completeTogether), and returns the orders it
// completed. When that transaction fails for a reason that retry does not wait out, which
// may be one order's own (an event it cannot store), each order is completed in a
// transaction of its own and gets its own error: the others are not failed with it, to
// have their payments, which succeeded, drawn again on redelivery.
func (w *Worker) storeCompletions(ctx context.Context, items []*batchItem[outbox.Row]) (map[int]bool, error) {
	completed, err := w.completeTogether(ctx, items)
	if err == nil || len(items) == 1 || waitedOut(err) || ctx.Err() != nil {
		return completed, err
	}
	w.log.WarnContext(ctx, "completing orders together failed, each is completed by itself",
		slog.Int("orders", len(items)), slog.Any("error", err))
	completed = make(map[int]bool, len(items))
	for _, it := range items {
		done, err := w.completeTogether(ctx, []*batchItem[outbox.Row]{it})
		if err != nil {
			it.err = err
			continue
		}
		maps.Copy(completed, done)
	}
	return completed, nil
}

// completeTogether completes the orders of items that are still processing, and writes their
// OrderCompleted events, in one transaction, and returns the orders it completed.
func (w *Worker) completeTogether(ctx context.Context, items []*batchItem[outbox.Row]) (map[int]bool, error) {
	var completed map[int]bool
	err := db.WithTx(ctx, w.client, func(tx *ent.Tx) error {
		var err error
		completed, err = orderIDs(tx.QueryContext(ctx, completeOrders, orderIDsOf(items),
			string(order.StatusProcessing), string(order.StatusCompleted)))
		if err != nil {
			return err
		}
		// One event per order completed: the first item of an order takes it, as
		// orderBatch tells the first that it changed the order.
		rows := make([]outbox.Row, 0, len(completed))
		written := make(map[int]bool, len(completed))
		for _, it := range items {
			if completed[it.orderID] && !written[it.orderID] {
				written[it.orderID] = true
				rows = append(rows, it.value)
			}
		}
		return outbox.WriteRows(ctx, tx, rows)
	})
	if err != nil {
		return nil, fmt.Errorf("complete %d orders: %w", len(items), err)
	}
	return completed, nil
}

// decline records the declined payment of the order, if it is still processing and has none
// recorded, so that no later delivery of its OrderCreated pays again (startPayment), and
// reports whether it did. The orders of the payments declined at once are recorded together
// (newDeclines).
func (w *Worker) decline(ctx context.Context, orderID int) (bool, error) {
	recorded, err := w.declines.do(ctx, orderID, struct{}{})
	if err != nil {
		return false, fmt.Errorf("record the declined payment of order %d: %w", orderID, err)
	}
	return recorded, nil
}

// maxDeclines is the most declined payments one statement records.
const maxDeclines = 500

// newDeclines returns the batch that records the declined payments of the orders whose
// payments end at once, up to maxDeclines in one statement. The order's updated_at stays:
// nothing the API shows of it changes.
func newDeclines(w *Worker) *orderBatch[struct{}] {
	return newOrderUpdates(w, maxDeclines, "record the declined payments of", `UPDATE orders SET payment_declined_at = now()
		WHERE id = ANY($1) AND status = $2 AND payment_declined_at IS NULL RETURNING id`,
		string(order.StatusProcessing))
}

// settleGrace is how long recording an outcome that was already decided may go on after the
// delivery's context ended (settling), or after the e-mail of a notification went out
// (mailBeforeCommit).
const settleGrace = 5 * time.Second

// settling returns a context for recording an outcome that has been decided: a payment's
// completion or its decline. It outlives the cancellation of ctx by up to settleGrace. A delivery is
// interrupted when its channel closes or the stop deadline passes; rolling such a
// transaction back then would leave the decision to the redelivery, which would draw the
// payment again. The grace keeps a database that does not answer from holding the worker
// up. ctx's deadline, the bound of an attempt (attemptTimeout), ends it at once: a
// transaction that had no answer by then will not get one. Call the returned function once
// done.
func settling(ctx context.Context) (context.Context, func()) {
	settle, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel(context.Cause(ctx))
			return
		}
		t := time.NewTimer(settleGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(context.Cause(ctx))
		case <-settle.Done():
		}
	})
	return settle, func() {
		stop()
		cancel(nil)
	}
}

// sleep waits for d, or returns ctx's error if ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
