package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"

	"orderflow/ent"
	"orderflow/ent/notification"
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
// it inserts the OrderCompleted notification, marked sent, and sends the e-mail before the
// commit: an e-mail that cannot be sent rolls the notification back. A redelivery finds the
// notification already there and sends nothing: the unique index on (order_id, event_type)
// also makes a concurrent duplicate wait for the first transaction and then insert nothing.
func (w *Worker) handleOrderCompleted(ctx context.Context, env events.Envelope, e events.OrderCompleted) error {
	log := w.log.With(slog.Int("orderId", e.OrderID), slog.String("eventId", env.ID))
	var sent bool
	err := w.retry(ctx, func(ctx context.Context) error {
		sent = false
		// Once the e-mail is out, the notification must commit even if the delivery is
		// interrupted: a rollback would send the e-mail again on the redelivery.
		settle, done := settling(ctx)
		defer done()
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

// notifyCompleted records the OrderCompleted notification inside tx, marked sent, and sends
// its e-mail, unless the order already has one; it reports whether it sent the e-mail. One
// statement reads the order and its customer and inserts the notification
// (notifyCompletedSQL).
func (w *Worker) notifyCompleted(ctx context.Context, tx *ent.Tx, e events.OrderCompleted) (bool, error) {
	rows, err := tx.QueryContext(ctx, notifyCompletedSQL, e.OrderID, string(notification.EventTypeOrderCompleted))
	if err != nil {
		return false, notifyError(e.OrderID, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return false, notifyError(e.OrderID, err)
		}
		return false, errOrderGone
	}
	mail := Email{}
	var message sql.NullString // NULL: the order already had its notification
	if err := rows.Scan(&mail.OrderID, &mail.Total, &mail.To, &mail.Name, &message); err != nil {
		return false, notifyError(e.OrderID, err)
	}
	if err := rows.Close(); err != nil {
		return false, notifyError(e.OrderID, err)
	}
	if !message.Valid {
		return false, nil
	}
	mail.Subject = fmt.Sprintf("Your order #%d has been completed", mail.OrderID)
	mail.Body = message.String
	if err := w.opts.Mailer.Send(ctx, mail); err != nil {
		return false, fmt.Errorf("send completion e-mail for order %d: %w", mail.OrderID, err)
	}
	return true, nil
}

// notifyCompletedSQL reads the order $1 and its customer and inserts its notification of
// event type $2 (OrderCompleted), marked sent, unless it has one. It returns the order's id
// and total, the customer's e-mail address and name, and the notification's message, NULL
// when the order already had one; no row when the order does not exist.
const notifyCompletedSQL = `
WITH o AS (
	SELECT o.id, o.total, u.email, u.name FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = $1
), inserted AS (
	INSERT INTO notifications (created_at, event_type, message, is_email_sent, order_id)
	SELECT now(), $2,
		format('Your order #%s for %s has been completed. Thank you for your purchase!', o.id, round(o.total, 2)),
		true, o.id
	FROM o
	ON CONFLICT (order_id, event_type) DO NOTHING
	RETURNING message
)
SELECT o.id, o.total, o.email, o.name, (SELECT message FROM inserted) FROM o`

// notifyError is the error of notifyCompletedSQL: errOrderGone for an order deleted while
// its notification was inserted.
func notifyError(orderID int, err error) error {
	if isForeignKeyViolation(err) {
		return errOrderGone
	}
	return fmt.Errorf("insert %s notification of order %d: %w", notification.EventTypeOrderCompleted, orderID, err)
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
