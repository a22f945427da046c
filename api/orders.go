package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"orderflow/api/oas"
)

// querier runs SQL on the pool or in a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// loadOrders reads the orders with the given ids, with their user names and items, in one
// query, and returns them in the order of ids (missing ids are left out).
func loadOrders(ctx context.Context, q querier, ids []int) ([]oas.Order, error) {
	if len(ids) == 0 {
		return []oas.Order{}, nil
	}
	rows, err := q.QueryContext(ctx, `
		SELECT o.id, o.user_id, u.name, o.total, o.status, o.created_at, o.updated_at,
		       i.id, i.product_id, p.name, i.quantity, i.price
		FROM orders o
		JOIN users u ON u.id = o.user_id
		LEFT JOIN order_items i ON i.order_id = o.id
		LEFT JOIN products p ON p.id = i.product_id
		WHERE o.id = ANY($1)
		ORDER BY o.id, i.id`, ids)
	if err != nil {
		return nil, fmt.Errorf("load orders: %w", err)
	}
	defer rows.Close()
	byID := make(map[int]*oas.Order, len(ids))
	for rows.Next() {
		var (
			o                      oas.Order
			total                  decimal.Decimal
			status                 string
			itemID, productID, qty sql.NullInt64
			productName            sql.NullString
			price                  decimal.NullDecimal
		)
		if err := rows.Scan(&o.ID, &o.UserId, &o.UserName, &total, &status, &o.CreatedAt, &o.UpdatedAt,
			&itemID, &productID, &productName, &qty, &price); err != nil {
			return nil, fmt.Errorf("load orders: %w", err)
		}
		cur, ok := byID[o.ID]
		if !ok {
			o.Total = oas.Money(total)
			o.Status = oas.OrderStatus(status)
			o.CreatedAt = o.CreatedAt.UTC()
			o.UpdatedAt = o.UpdatedAt.UTC()
			o.Items = []oas.OrderItem{}
			cur = &o
			byID[o.ID] = cur
		}
		if itemID.Valid {
			cur.Items = append(cur.Items, oas.OrderItem{
				ID:          int(itemID.Int64),
				ProductId:   int(productID.Int64),
				ProductName: productName.String,
				Quantity:    int(qty.Int64),
				Price:       oas.Money(price.Decimal),
			})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load orders: %w", err)
	}
	out := make([]oas.Order, 0, len(ids))
	for _, id := range ids {
		if o, ok := byID[id]; ok {
			out = append(out, *o)
		}
	}
	return out, nil
}

// loadOrder reads one order; a 404 Problem naming it when it does not exist.
func loadOrder(ctx context.Context, q querier, id int) (*oas.Order, error) {
	orders, err := loadOrders(ctx, q, []int{id})
	if err != nil {
		return nil, err
	}
	if len(orders) == 0 {
		return nil, notFound("Order", id)
	}
	return &orders[0], nil
}

// ListOrders lists orders, newest first: every order to an admin, their own to a customer.
func (h *Handler) ListOrders(ctx context.Context, params oas.ListOrdersParams) (*oas.ListOrdersOKHeaders, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	limit, offset := page(params.Limit, params.Offset)
	var (
		where []string
		args  []any
	)
	if !p.IsAdmin() {
		if params.UserId.Set && params.UserId.Value != p.ID {
			// Another customer's orders do not exist for this caller.
			return &oas.ListOrdersOKHeaders{XTotalCount: 0, Response: []oas.Order{}}, nil
		}
		args = append(args, p.ID)
		where = append(where, "user_id = $"+strconv.Itoa(len(args)))
	} else if params.UserId.Set {
		args = append(args, params.UserId.Value)
		where = append(where, "user_id = $"+strconv.Itoa(len(args)))
	}
	if params.Status.Set {
		args = append(args, string(params.Status.Value))
		where = append(where, "status = $"+strconv.Itoa(len(args)))
	}
	cond := ""
	if len(where) > 0 {
		cond = "WHERE " + strings.Join(where, " AND ")
	}
	// The count, the page's ids and the orders are read in one snapshot: read one after the
	// other, an order the worker moved on in between would come back with a status other
	// than the one asked for, and the total would count orders the page does not show.
	tx, err := h.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var total int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM orders `+cond, args...).Scan(&total); err != nil {
		return nil, fmt.Errorf("count orders: %w", err)
	}
	// Ids grow with creation time, and the primary key serves this order without a sort.
	rows, err := tx.QueryContext(ctx, `SELECT id FROM orders `+cond+
		` ORDER BY id DESC LIMIT `+strconv.Itoa(limit)+` OFFSET `+strconv.Itoa(offset), args...)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	ids := make([]int, 0, min(limit, total))
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list orders: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	rows.Close()
	orders, err := loadOrders(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	return &oas.ListOrdersOKHeaders{XTotalCount: total, Response: orders}, nil
}

// GetOrder reads an order (admin, or its owner).
func (h *Handler) GetOrder(ctx context.Context, params oas.GetOrderParams) (*oas.Order, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	o, err := loadOrder(ctx, h.db, params.ID)
	if err != nil {
		return nil, err
	}
	if !p.IsAdmin() && o.UserId != p.ID {
		return nil, notFound("Order", params.ID)
	}
	return o, nil
}

// ListOrderNotifications lists an order's notifications, oldest first (admin, or the
// order's owner).
func (h *Handler) ListOrderNotifications(ctx context.Context, params oas.ListOrderNotificationsParams) ([]oas.Notification, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	var owner int
	err = h.db.QueryRowContext(ctx, `SELECT user_id FROM orders WHERE id = $1`, params.ID).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !p.IsAdmin() && owner != p.ID) {
		return nil, notFound("Order", params.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("load order %d: %w", params.ID, err)
	}
	rows, err := h.db.QueryContext(ctx, `
		SELECT id, order_id, event_type, message, is_email_sent, created_at
		FROM notifications WHERE order_id = $1 ORDER BY created_at, id`, params.ID)
	if err != nil {
		return nil, fmt.Errorf("list notifications of order %d: %w", params.ID, err)
	}
	defer rows.Close()
	out := []oas.Notification{}
	for rows.Next() {
		var n oas.Notification
		var eventType string
		if err := rows.Scan(&n.ID, &n.OrderId, &eventType, &n.Message, &n.IsEmailSent, &n.CreatedAt); err != nil {
			return nil, fmt.Errorf("list notifications of order %d: %w", params.ID, err)
		}
		n.EventType = oas.NotificationEventType(eventType)
		n.CreatedAt = n.CreatedAt.UTC()
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list notifications of order %d: %w", params.ID, err)
	}
	return out, nil
}

// row is the result of queryRow, like *sql.Row for a querier.
type row struct {
	rows *sql.Rows
	err  error
}

// queryRow runs a query expected to return at most one row.
func queryRow(ctx context.Context, q querier, query string, args ...any) row {
	rows, err := q.QueryContext(ctx, query, args...)
	return row{rows: rows, err: err}
}

// Scan copies the first row into dest, or returns sql.ErrNoRows.
func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}
