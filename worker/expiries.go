package worker

import (
	"context"
	"fmt"

	"orderflow/ent"
	"orderflow/ent/notification"
	"orderflow/internal/group"
)

// maxExpiryNotes is the most OrderExpired notifications one statement inserts.
const maxExpiryNotes = 500

// expiryNotes inserts the OrderExpired notifications of the handlers that run at once
// together: the notifications waiting together are inserted by one of their handlers
// (group.Writer, one writer), up to maxExpiryNotes in one statement. A sweep publishes
// thousands of OrderExpired events at once, and their notifications then cost a statement
// and a commit for many instead of one each.
//
// The insert skips a notification that is already there, so a notification handed back
// after a failed statement can be inserted again by its own handler without ever being
// stored twice.
type expiryNotes struct {
	client *ent.Client
	groups *group.Writer[*expiryNote]
}

// expiryNote is one waiting notification and, once done is closed, its outcome.
type expiryNote struct {
	orderID int
	message string

	done     chan struct{}
	inserted bool // false: the order already had its OrderExpired notification
	// alone is set when the statement failed (an order that no longer exists fails it
	// whole, as does a broken connection): the handler inserts its notification by itself.
	alone bool
}

func newExpiryNotes(client *ent.Client) *expiryNotes {
	return &expiryNotes{client: client, groups: group.NewWriter[*expiryNote](1, maxExpiryNotes)}
}

// insert inserts the OrderExpired notification of orderID with message, unless the order
// has one, and tells whether it did. alone means that the statement of its group failed:
// the caller inserts it by itself.
func (x *expiryNotes) insert(ctx context.Context, orderID int, message string) (inserted, alone bool) {
	n := &expiryNote{orderID: orderID, message: message, done: make(chan struct{})}
	x.groups.Write(n, n.done, func(group []*expiryNote) { x.insertGroup(ctx, group) })
	return n.inserted, n.alone
}

// insertGroup inserts the notifications of group in one statement and answers them. When the
// statement fails, each is handed back to its handler.
func (x *expiryNotes) insertGroup(ctx context.Context, group []*expiryNote) {
	defer func() {
		for _, n := range group {
			close(n.done)
		}
	}()
	inserted, err := x.insertAll(ctx, group)
	if err != nil {
		for _, n := range group {
			n.alone = true
		}
		return
	}
	for _, n := range group {
		// The first note of an order takes its row; a duplicate in the same group (the
		// event delivered twice at once) finds it taken.
		if inserted[n.orderID] {
			n.inserted = true
			delete(inserted, n.orderID)
		}
	}
}

// insertGroupSQL inserts one notification of event type $3 (OrderExpired) per order of $1
// with the message of $2, skipping the orders that have one, and returns the orders it
// inserted.
const insertGroupSQL = `INSERT INTO notifications (created_at, event_type, message, is_email_sent, order_id)
SELECT now(), $3, n.message, false, n.order_id FROM unnest($1::bigint[], $2::text[]) AS n(order_id, message)
ON CONFLICT (order_id, event_type) DO NOTHING
RETURNING order_id`

// insertAll runs insertGroupSQL for group and returns the orders whose notification it
// inserted. It fails whole: an order that no longer exists fails the statement.
func (x *expiryNotes) insertAll(ctx context.Context, group []*expiryNote) (map[int]bool, error) {
	ids := make([]int64, len(group))
	messages := make([]string, len(group))
	for i, n := range group {
		ids[i], messages[i] = int64(n.orderID), n.message
	}
	rows, err := x.client.QueryContext(ctx, insertGroupSQL, ids, messages, string(notification.EventTypeOrderExpired))
	if err != nil {
		return nil, fmt.Errorf("insert %d OrderExpired notifications: %w", len(group), err)
	}
	defer rows.Close()
	inserted := make(map[int]bool, len(group))
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("insert %d OrderExpired notifications: %w", len(group), err)
		}
		inserted[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("insert %d OrderExpired notifications: %w", len(group), err)
	}
	return inserted, nil
}
