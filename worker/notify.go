package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"

	"orderflow/ent"
	"orderflow/ent/notification"
	"orderflow/ent/order"
	"orderflow/events"
	"orderflow/platform/db"
)

// Email is one message to a customer.
type Email struct {
	To      string
	Name    string
	Subject string
	Body    string
	OrderID int
	Total   decimal.Decimal
}

// Mailer sends e-mails to customers. Send is called inside the transaction that records the
// notification, so the notification commits only if the e-mail went out; an error rolls the
// notification back and the event is delivered again.
type Mailer interface {
	Send(ctx context.Context, e Email) error
}

// LogMailer is the simulated mail server: it writes each e-mail as one structured log line
// with the attributes to, name, subject, orderId, total and body.
type LogMailer struct {
	Log *slog.Logger
}

// Send implements Mailer.
func (m LogMailer) Send(ctx context.Context, e Email) error {
	m.Log.LogAttrs(ctx, slog.LevelInfo, "email sent",
		slog.String("to", e.To),
		slog.String("name", e.Name),
		slog.String("subject", e.Subject),
		slog.Int("orderId", e.OrderID),
		slog.String("total", e.Total.StringFixed(2)),
		slog.String("body", e.Body),
	)
	return nil
}

// handleOrderCompleted tells the customer that their order completed. In one transaction
// it inserts the OrderCompleted notification, sends the e-mail and marks it sent. A
// redelivery finds the notification already there and sends nothing: the unique index on
// (order_id, event_type) also makes a concurrent duplicate wait for the first transaction
// and then insert nothing. The notifications of the handlers running at once are recorded
// together, in one transaction (newCompletedNotes); when it fails whole, each handler
// records its own.
func (w *Worker) handleOrderCompleted(ctx context.Context, env events.Envelope, e events.OrderCompleted) error {
	log := w.log.With(slog.Int("orderId", e.OrderID), slog.String("eventId", env.ID))
	var sent bool
	err := w.retry(ctx, func(ctx context.Context) error {
		sent = false
		// Once the e-mail is out, the notification must commit even if the delivery is
		// interrupted: a rollback would send the e-mail again on the redelivery.
		settle, done := settling(ctx)
		defer done()
		var err error
		if sent, err = w.completedNotes.do(settle, e.OrderID, struct{}{}); !failedWhole(err) {
			return err
		}
		return db.WithTx(settle, w.client, func(tx *ent.Tx) error {
			var err error
			sent, err = w.notifyCompleted(settle, tx, e)
			return err
		})
	})
	switch {
	case errors.Is(err, errOrderGone):
		log.WarnContext(ctx, "order completed event dropped: the order no longer exists")
		return nil
	case err != nil:
		return err
	case !sent:
		log.InfoContext(ctx, "order completed event dropped: the customer was already notified")
	default:
		notificationsTotal.WithLabelValues(string(notification.EventTypeOrderCompleted)).Inc()
	}
	return nil
}

// notifyCompleted records the OrderCompleted notification inside tx and sends its e-mail,
// unless the order already has one; it reports whether it sent the e-mail.
func (w *Worker) notifyCompleted(ctx context.Context, tx *ent.Tx, e events.OrderCompleted) (bool, error) {
	o, err := tx.Order.Query().Where(order.ID(e.OrderID)).WithUser().Only(ctx)
	if ent.IsNotFound(err) {
		return false, errOrderGone
	}
	if err != nil {
		return false, fmt.Errorf("read order %d: %w", e.OrderID, err)
	}
	mail := completionEmail(customer{orderID: o.ID, total: o.Total, email: o.Edges.User.Email, name: o.Edges.User.Name})
	id, inserted, err := insertNotification(ctx, tx.Notification, o.ID, notification.EventTypeOrderCompleted, mail.Body)
	if err != nil || !inserted {
		return false, err
	}
	if err := w.opts.Mailer.Send(ctx, mail); err != nil {
		return false, fmt.Errorf("send completion e-mail for order %d: %w", o.ID, err)
	}
	if err := tx.Notification.UpdateOneID(id).SetIsEmailSent(true).Exec(ctx); err != nil {
		return false, fmt.Errorf("mark e-mail of order %d sent: %w", o.ID, err)
	}
	return true, nil
}

// customer is a completed order and whom to tell about it.
type customer struct {
	orderID     int
	total       decimal.Decimal
	email, name string
}

// completionEmail is the e-mail that tells c that their order completed; its body is also
// the notification's message.
func completionEmail(c customer) Email {
	return Email{
		To:      c.email,
		Name:    c.name,
		Subject: fmt.Sprintf("Your order #%d has been completed", c.orderID),
		Body: fmt.Sprintf("Your order #%d for %s has been completed. Thank you for your purchase!",
			c.orderID, c.total.StringFixed(2)),
		OrderID: c.orderID,
		Total:   c.total,
	}
}

// maxCompletedNotes is the most OrderCompleted notifications one transaction records.
const maxCompletedNotes = 500

// newCompletedNotes returns the batch that records the OrderCompleted notifications of the
// handlers that run at once, up to maxCompletedNotes in one transaction: it reads the orders
// and their customers, inserts the notifications that are not there yet, sends their e-mails
// (each with its own handler's context) and marks them sent. An order that no longer exists
// fails its handler alone (errOrderGone), as does an e-mail that could not be sent: its
// notification is deleted again before the commit, so that its redelivery sends it.
func newCompletedNotes(w *Worker) *orderBatch[struct{}] {
	return newOrderBatch(w, maxCompletedNotes, func(ctx context.Context, items []*batchItem[struct{}]) (map[int]bool, error) {
		var sent map[int]bool
		err := db.WithTx(ctx, w.client, func(tx *ent.Tx) error {
			var err error
			sent, err = w.notifyAllCompleted(ctx, tx, items)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("record %d OrderCompleted notifications: %w", len(items), err)
		}
		return sent, nil
	})
}

// notifyAllCompleted is newCompletedNotes' transaction: it returns the orders whose e-mail it
// sent.
func (w *Worker) notifyAllCompleted(ctx context.Context, tx *ent.Tx, items []*batchItem[struct{}]) (map[int]bool, error) {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = int64(it.orderID)
	}
	customers, err := readCustomers(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	// In order of id, as another worker's group would insert the same orders.
	found, messages := make([]int64, 0, len(customers)), make([]string, 0, len(customers))
	for _, id := range slices.Sorted(maps.Keys(customers)) {
		found, messages = append(found, int64(id)), append(messages, completionEmail(customers[id]).Body)
	}
	inserted, err := orderIDs(tx.QueryContext(ctx, insertNotes, found, messages, string(notification.EventTypeOrderCompleted)))
	if err != nil {
		return nil, fmt.Errorf("insert: %w", err)
	}
	sent := make(map[int]bool, len(inserted))
	var failed []int64
	for _, it := range items {
		c, found := customers[it.orderID]
		switch {
		case !found:
			it.err = errOrderGone
		case inserted[it.orderID]: // the first item of the order sends its e-mail
			delete(inserted, it.orderID)
			if err := w.opts.Mailer.Send(it.ctx, completionEmail(c)); err != nil {
				it.err = fmt.Errorf("send completion e-mail for order %d: %w", it.orderID, err)
				failed = append(failed, int64(it.orderID))
				continue
			}
			sent[it.orderID] = true
		}
	}
	if len(sent) > 0 {
		marked := make([]int64, 0, len(sent))
		for id := range sent {
			marked = append(marked, int64(id))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE notifications SET is_email_sent = true
			WHERE order_id = ANY($1) AND event_type = $2`, marked, string(notification.EventTypeOrderCompleted)); err != nil {
			return nil, fmt.Errorf("mark e-mails sent: %w", err)
		}
	}
	if len(failed) > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM notifications WHERE order_id = ANY($1) AND event_type = $2`,
			failed, string(notification.EventTypeOrderCompleted)); err != nil {
			return nil, fmt.Errorf("delete the notifications whose e-mail failed: %w", err)
		}
	}
	return sent, nil
}

// readCustomers reads the orders of ids that exist, with their customers.
func readCustomers(ctx context.Context, tx *ent.Tx, ids []int64) (map[int]customer, error) {
	rows, err := tx.QueryContext(ctx, `SELECT o.id, o.total, u.email, u.name
		FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	defer rows.Close()
	customers := make(map[int]customer, len(ids))
	for rows.Next() {
		var c customer
		if err := rows.Scan(&c.orderID, &c.total, &c.email, &c.name); err != nil {
			return nil, fmt.Errorf("read orders: %w", err)
		}
		customers[c.orderID] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	return customers, nil
}

// handleOrderExpired records the OrderExpired notification of an order, once, as an audit
// trail; no e-mail is sent. The notifications of the handlers running at once are inserted
// together, in one statement without a transaction around it (newExpiryNotes); when that
// statement fails, each handler inserts its own.
func (w *Worker) handleOrderExpired(ctx context.Context, env events.Envelope, e events.OrderExpired) error {
	log := w.log.With(slog.Int("orderId", e.OrderID), slog.String("eventId", env.ID))
	body := fmt.Sprintf("Your order #%d for %s has expired: its payment was not completed within %s, and the reserved items have been released.",
		e.OrderID, e.Total.StringFixed(2), e.ExpiredAfter)
	var inserted bool
	err := w.retry(ctx, func(ctx context.Context) error {
		var err error
		if inserted, err = w.expiries.do(ctx, e.OrderID, body); !failedWhole(err) {
			return err
		}
		_, inserted, err = insertNotification(ctx, w.client.Notification, e.OrderID, notification.EventTypeOrderExpired, body)
		return err
	})
	switch {
	case errors.Is(err, errOrderGone):
		log.WarnContext(ctx, "order expired event dropped: the order no longer exists")
		return nil
	case err != nil:
		return err
	case inserted:
		notificationsTotal.WithLabelValues(string(notification.EventTypeOrderExpired)).Inc()
		log.InfoContext(ctx, "order expiry recorded")
	default:
		log.InfoContext(ctx, "order expired event dropped: the expiry was already recorded")
	}
	return nil
}

// insertNotification inserts a notification through nc (of a transaction, or of the pool)
// unless the order already has one of this type, and returns its id and whether it was
// inserted. It returns errOrderGone when the order does not exist.
func insertNotification(ctx context.Context, nc *ent.NotificationClient, orderID int, typ notification.EventType, message string) (int, bool, error) {
	id, err := nc.Create().
		SetOrderID(orderID).
		SetEventType(typ).
		SetMessage(message).
		SetIsEmailSent(false).
		OnConflictColumns(notification.FieldOrderID, notification.FieldEventType).
		DoNothing().
		ID(ctx)
	switch {
	case err == nil:
		return id, true, nil
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case isForeignKeyViolation(err):
		return 0, false, errOrderGone
	default:
		return 0, false, fmt.Errorf("insert %s notification of order %d: %w", typ, orderID, err)
	}
}

// isForeignKeyViolation reports a PostgreSQL foreign_key_violation (SQLSTATE 23503).
func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}
