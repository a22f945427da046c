package worker

import (
	"context"
	"fmt"

	"orderflow/ent/notification"
)

// maxExpiryNotes is the most OrderExpired notifications one statement inserts.
const maxExpiryNotes = 500

// newExpiryNotes returns the batch that inserts the OrderExpired notifications of the
// handlers that run at once, up to maxExpiryNotes in one statement, each with its message.
// A sweep publishes thousands of OrderExpired events at once.
//
// The insert skips a notification that is already there, so a notification handed back
// after a failed statement can be inserted again by its own handler without ever being
// stored twice. An order that no longer exists fails the statement whole, as does a broken
// connection: each handler then inserts its notification by itself.
func newExpiryNotes(w *Worker) *orderBatch[string] {
	return newOrderBatch(w, maxExpiryNotes, func(ctx context.Context, notes []*batchItem[string]) (map[int]bool, error) {
		messages := make([]string, len(notes))
		for i, n := range notes {
			messages[i] = n.value
		}
		inserted, err := orderIDs(w.client.QueryContext(ctx, insertNotes, orderIDsOf(notes), messages, string(notification.EventTypeOrderExpired)))
		if err != nil {
			return nil, fmt.Errorf("insert %d OrderExpired notifications: %w", len(notes), err)
		}
		return inserted, nil
	})
}

// insertNotes inserts one notification of event type $3 per order of $1 with the message of
// $2, its e-mail not sent, skipping the orders that have one, and returns the orders it
// inserted.
const insertNotes = `INSERT INTO notifications (created_at, event_type, message, is_email_sent, order_id)
SELECT now(), $3, n.message, false, n.order_id FROM unnest($1::bigint[], $2::text[]) AS n(order_id, message)
ON CONFLICT (order_id, event_type) DO NOTHING
RETURNING order_id`
