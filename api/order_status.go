package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/events"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
)

// UpdateOrderStatus changes an order's status along the state machine (admin). Completing
// or expiring an order writes the matching event to the outbox in the same transaction;
// expiring also releases the reserved stock. An order the admin expires is announced as
// expired after the time it had been open (which the customer's notification repeats), not
// after orders.expireAfter, which it may not have reached.
func (h *Handler) UpdateOrderStatus(ctx context.Context, req *oas.OrderStatusUpdate, params oas.UpdateOrderStatusParams) (*oas.Order, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	if !p.IsAdmin() {
		return nil, errForbidden
	}
	to, err := domain.ParseStatus(string(req.Status))
	if err != nil {
		return nil, err
	}
	err = db.WithTx(ctx, h.client, func(tx *ent.Tx) error {
		var (
			from      domain.Status
			userID    int
			total     decimal.Decimal
			createdAt time.Time
		)
		err := queryRow(ctx, tx,
			`SELECT status, user_id, total, created_at FROM orders WHERE id = $1 FOR NO KEY UPDATE`, params.ID).Scan(&from, &userID, &total, &createdAt)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Order", params.ID)
		}
		if err != nil {
			return fmt.Errorf("load order %d: %w", params.ID, err)
		}
		switch err := domain.CanTransition(from, to); {
		case errors.Is(err, domain.ErrSameStatus):
			return nil
		case err != nil:
			return err
		}
		now := h.now()
		set := "status = $2, updated_at = $3"
		if to == domain.StatusProcessing {
			// The payment is the administrator's: the worker runs none for the order.
			set += ", processing_by_admin_at = $3"
		}
		res, err := tx.ExecContext(ctx, `UPDATE orders SET `+set+` WHERE id = $1 AND status = $4`,
			params.ID, string(to), now, string(from))
		if err != nil {
			return fmt.Errorf("update order %d: %w", params.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("update order %d: status changed concurrently: %w", params.ID, domain.ErrTransitionNotAllowed)
		}
		var ev events.Event
		switch to {
		case domain.StatusCompleted:
			ev = events.OrderCompleted{OrderID: params.ID, UserID: userID, Total: events.NewMoney(total), CompletedAt: now}
		case domain.StatusExpired:
			if err := releaseStock(ctx, tx, params.ID, now); err != nil {
				return err
			}
			// At least a second: the event's expiredAfter is a positive duration.
			age := max(now.Sub(createdAt).Truncate(time.Second), time.Second)
			ev = events.OrderExpired{OrderID: params.ID, UserID: userID, Total: events.NewMoney(total), ExpiredAt: now,
				ExpiredAfter: age.String()}
		}
		if ev != nil {
			if _, err := outbox.Write(ctx, tx, events.SourceAPI, ev, actorHeaders(p.ID)); err != nil {
				return fmt.Errorf("write %s: %w", ev.Name(), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return loadOrder(ctx, h.db, params.ID)
}

// releaseStock gives an order's reserved quantities back to its products, locking them in
// id order as OrderStatement and GroupStatement do when they reserve stock. now was read
// before the locks: a product changed meanwhile keeps its later updated_at.
func releaseStock(ctx context.Context, tx *ent.Tx, orderID int, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `
		SELECT p.id FROM products p
		WHERE p.id IN (SELECT product_id FROM order_items WHERE order_id = $1)
		ORDER BY p.id FOR NO KEY UPDATE`, orderID); err != nil {
		return fmt.Errorf("lock products of order %d: %w", orderID, err)
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE products p SET stock = p.stock + i.quantity, updated_at = greatest(p.updated_at, $2)
		FROM (SELECT product_id, sum(quantity) AS quantity FROM order_items WHERE order_id = $1 GROUP BY product_id) i
		WHERE p.id = i.product_id`, orderID, now); err != nil {
		return fmt.Errorf("release stock of order %d: %w", orderID, err)
	}
	return nil
}

// DeleteOrder deletes an order (admin), releasing its stock if it still holds it.
func (h *Handler) DeleteOrder(ctx context.Context, params oas.DeleteOrderParams) error {
	if err := requireAdmin(ctx); err != nil {
		return err
	}
	return db.WithTx(ctx, h.client, func(tx *ent.Tx) error {
		var status domain.Status
		err := queryRow(ctx, tx, `SELECT status FROM orders WHERE id = $1 FOR UPDATE`, params.ID).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Order", params.ID)
		}
		if err != nil {
			return fmt.Errorf("load order %d: %w", params.ID, err)
		}
		if status.HoldsStock() {
			if err := releaseStock(ctx, tx, params.ID, h.now()); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM orders WHERE id = $1`, params.ID); err != nil {
			return fmt.Errorf("delete order %d: %w", params.ID, err)
		}
		return nil
	})
}
