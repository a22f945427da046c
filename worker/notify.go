package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

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
// notification back and the event is delivered again. ctx ends when the delivery is
// interrupted or the attempt's bound passes: a Send that stops then returns an error, having
// sent nothing. Once Send has returned nil, the notification commits even so.
type Mailer interface {
	Send(ctx context.Context, e Email) error
}

// LogMailer is the simulated mail server: it writes each e-mail as one structured log line
// with the attributes to, name, subject, order_id, total and body.
type LogMailer struct {
	Log *slog.Logger
}

// Send implements Mailer.
func (m LogMailer) Send(ctx context.Context, e Email) error {
	m.Log.LogAttrs(ctx, slog.LevelInfo, "email sent",
		slog.String("to", e.To),
		slog.String("name", e.Name),
		slog.String("subject", e.Subject),
		slog.Int("order_id", e.OrderID),
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
	log := w.log.With(slog.Int("order_id", e.OrderID), slog.String("event_id", env.ID))
	var sent bool
	err := w.retry(ctx, func(ctx context.Context) error {
		sent = false
		txCtx, send, done := mailBeforeCommit(ctx)
		defer done()
		return db.WithTx(txCtx, w.client, func(tx *ent.Tx) error {
			var err error
			sent, err = w.notifyCompleted(txCtx, tx, e, send)
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
// its e-mail through send, unless the order already has one; it reports whether it sent the
// e-mail. One statement reads the order and its customer and inserts the notification
// (notifyCompletedSQL).
func (w *Worker) notifyCompleted(ctx context.Context, tx *ent.Tx, e events.OrderCompleted, send func(func(context.Context) error) error) (bool, error) {
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
	err = send(func(ctx context.Context) error { return w.opts.Mailer.Send(ctx, mail) })
	if err != nil {
		return false, fmt.Errorf("send completion e-mail for order %d: %w", mail.OrderID, err)
	}
	return true, nil
}

// errCommitAfterMail ends a transaction whose commit did not answer within settleGrace after
// its e-mail went out.
var errCommitAfterMail = fmt.Errorf("no commit within %s after the e-mail was sent", settleGrace)

// mailBeforeCommit returns the context of a transaction that sends an e-mail before its
// commit, and send, which sends it by calling f.
//
// Until send is called, the transaction ends with ctx (the delivery's, bounded by the
// attempt's timeout): no e-mail has gone out, so a rollback is safe. send stops following
// ctx, or fails without calling f once ctx has ended. f gets ctx, so that an interrupted
// delivery or the attempt's bound still stops an e-mail that is not out. Once f has sent
// it, the transaction no longer ends with ctx, and the commit has settleGrace of its own from
// then: a rollback would send the e-mail again, on the next attempt or delivery. The grace
// keeps a database that does not answer from holding the worker up.
//
// Call done once the transaction is over.
func mailBeforeCommit(ctx context.Context) (txCtx context.Context, send func(f func(context.Context) error) error, done func()) {
	txCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	var grace *time.Timer
	send = func(f func(context.Context) error) error {
		if !stop() { // ctx has ended: the transaction is ending with it
			return context.Cause(ctx)
		}
		if err := f(ctx); err != nil {
			return err
		}
		grace = time.AfterFunc(settleGrace, func() { cancel(errCommitAfterMail) })
		return nil
	}
	return txCtx, send, func() {
		stop()
		if grace != nil {
			grace.Stop()
		}
		cancel(nil)
	}
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
	if db.Code(err) == db.ForeignKeyViolation {
		return errOrderGone
	}
	return fmt.Errorf("insert %s notification of order %d: %w", notification.EventTypeOrderCompleted, orderID, err)
}

// handleOrderExpired records the OrderExpired notification of an order, once, as an audit
// trail; no e-mail is sent. The notifications of the handlers running at once are inserted
// together, in one statement without a transaction around it (newExpiryNotes); when that
// statement fails, each handler inserts its own.
func (w *Worker) handleOrderExpired(ctx context.Context, env events.Envelope, e events.OrderExpired) error {
	log := w.log.With(slog.Int("order_id", e.OrderID), slog.String("event_id", env.ID))
	body := fmt.Sprintf("Your order #%d for %s has expired after %s without being paid, and the reserved items have been released.",
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
	case db.Code(err) == db.ForeignKeyViolation:
		return 0, false, errOrderGone
	default:
		return 0, false, fmt.Errorf("insert %s notification of order %d: %w", typ, orderID, err)
	}
}
