package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"

	"orderflow/internal/group"
	"orderflow/platform/db"
)

// orderBatch runs one statement for the orders whose handlers wait for it together: the
// orders waiting together are handed to one of their handlers (group.Writer), which runs the
// statement for all of them. The events of a burst (thousands of OrderCreated events, or of
// OrderExpired ones after a sweep) then cost a statement and a commit for many orders
// instead of one each.
//
// The statement runs with a context of its own, bounded by the worker's attemptTimeout, that
// ends early only once no handler waits for it any longer, at least one of them cancelled (a
// stop, a closed channel, the end of a settling grace): the handler that runs it carries the
// others' work, so its own cancellation must not cut theirs short.
type orderBatch[T any] struct {
	w      *Worker
	groups *group.Writer[*batchItem[T]]
	// run runs the statement for items and returns the orders it changed. It fails whole.
	run func(ctx context.Context, items []*batchItem[T]) (map[int]bool, error)
}

// batchItem is one handler's order waiting in an orderBatch and, once done is closed, its
// outcome.
type batchItem[T any] struct {
	ctx     context.Context // the handler's
	orderID int
	value   T

	done    chan struct{}
	changed bool  // the statement changed the order for this handler
	err     error // the statement failed: nothing was changed for any handler
}

func newOrderBatch[T any](w *Worker, max int, run func(context.Context, []*batchItem[T]) (map[int]bool, error)) *orderBatch[T] {
	return &orderBatch[T]{w: w, groups: group.NewWriter[*batchItem[T]](1, max), run: run}
}

// do waits until the statement has run for orderID, with value, and reports whether it
// changed the order for this caller. When an order waits twice in one group (its event
// delivered twice at once), only the first is told that it changed it.
func (b *orderBatch[T]) do(ctx context.Context, orderID int, value T) (bool, error) {
	it := &batchItem[T]{ctx: ctx, orderID: orderID, value: value, done: make(chan struct{})}
	b.groups.Write(it, it.done, func(items []*batchItem[T]) { b.runGroup(ctx, items) })
	return it.changed, it.err
}

// runGroup runs the statement for items and answers every one of them. ctx is the context of
// the handler that runs it.
func (b *orderBatch[T]) runGroup(ctx context.Context, items []*batchItem[T]) {
	defer func() {
		for _, it := range items {
			close(it.done)
		}
	}()
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	var (
		waiting   atomic.Int64
		cancelled atomic.Pointer[error] // the cause of a handler's cancellation
	)
	waiting.Store(int64(len(items)))
	for _, it := range items {
		stop := context.AfterFunc(it.ctx, func() {
			// A handler's attempt that ran out of time does not end the statement, which
			// has a bound of its own: its error would then not tell whether it was sent.
			if cause := context.Cause(it.ctx); !errors.Is(cause, context.DeadlineExceeded) {
				cancelled.Store(&cause)
			}
			if waiting.Add(-1) == 0 {
				if cause := cancelled.Load(); cause != nil {
					cancel(*cause)
				}
			}
		})
		defer stop()
	}
	var changed map[int]bool
	err := db.Bounded(ctx, b.w.attemptTimeout, func(ctx context.Context) error {
		var err error
		changed, err = b.run(ctx, items)
		return err
	})
	for _, it := range items {
		switch {
		case err != nil:
			it.err = err
		case changed[it.orderID]:
			it.changed = true
			delete(changed, it.orderID)
		}
	}
}

// errAnswerCut marks a statement's failure while its answer was being read: the statement
// reached the database and may have committed (see unsent). database/sql reports a context
// that ended while it read rows by the context's error alone.
var errAnswerCut = errors.New("answer cut off")

// orderIDs reads the order ids that a statement run by QueryContext returned, one per row.
func orderIDs(rows *sql.Rows, err error) (map[int]bool, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := make(map[int]bool)
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("%w: %w", errAnswerCut, err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", errAnswerCut, err)
	}
	return ids, nil
}
