package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"orderflow/internal/group"
	"orderflow/platform/db"
)

// orderBatch runs one statement for the orders whose handlers wait for it together: the
// orders waiting together are handed to one of their handlers (group.Writer), which runs the
// statement for all of them. The events of a burst (thousands of OrderCreated events, or of
// OrderExpired ones after a sweep) then cost a statement and a commit for many orders
// instead of one each.
//
// The statement runs with a context of its own (groupContext), bounded by the worker's
// attemptTimeout, that ends early only once the context of every handler waiting for it has
// ended: the handler that runs it carries the others' work, so its own cancellation (a stop,
// a closed channel) must not cut theirs short.
type orderBatch[T any] struct {
	w      *Worker
	groups *group.Writer[*batchItem[T]]
	// run runs the statement for items and returns the orders it changed. It fails whole,
	// or fails an item alone by setting its err.
	run func(ctx context.Context, items []*batchItem[T]) (map[int]bool, error)
}

// batchItem is one handler's order waiting in an orderBatch and, once done is closed, its
// outcome.
type batchItem[T any] struct {
	ctx     context.Context // the handler's
	orderID int
	value   T

	done    chan struct{}
	changed bool // the statement changed the order for this handler
	// err is this item's failure, which run may set for it alone, or a groupFailure.
	err error
}

// groupFailure is the error of a statement that failed whole: it changed nothing for any of
// its items.
type groupFailure struct{ error }

func (g groupFailure) Unwrap() error { return g.error }

// failedWhole reports an error of do that is its group's failure.
func failedWhole(err error) bool { return errors.As(err, new(groupFailure)) }

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
	gctx, stop := newGroupContext(ctx, b.w.attemptTimeout)
	defer stop()
	var waiting atomic.Int64
	waiting.Store(int64(len(items)))
	for _, it := range items {
		stop := context.AfterFunc(it.ctx, func() {
			if waiting.Add(-1) == 0 {
				gctx.end(true)
			}
		})
		defer stop()
	}
	var changed map[int]bool
	err := func() (err error) {
		// A panic fails the group instead of leaving its writer's place taken: its handlers
		// get the failure as after any failure of the group. Not being the database's
		// unavailability, it is not retried: an expiry's handler inserts its own
		// notification, a claim or a completion returns it, and its message is delivered
		// again.
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		changed, err = b.run(gctx, items)
		return err
	}()
	if err != nil && gctx.Err() != nil && !gctx.abandoned.Load() {
		err = fmt.Errorf("%w within %s: %w", db.ErrNoAnswer, b.w.attemptTimeout, err)
	}
	for _, it := range items {
		switch {
		case err != nil:
			it.err = groupFailure{err}
		case it.err != nil: // failed alone
		case changed[it.orderID]:
			it.changed = true
			delete(changed, it.orderID)
		}
	}
}

// orderIDsOf returns the order ids of items, in their order, for a statement's array.
func orderIDsOf[T any](items []*batchItem[T]) []int64 {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = int64(it.orderID)
	}
	return ids
}

// errAnswerCut marks a statement's failure while its answer was being read: the statement
// reached the database and may have committed (see changedNothing). database/sql reports a
// context that ended while it read rows by the context's error alone.
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

// groupContext is the context of a group's statement: it carries the values of the context
// of the handler that runs it, and ends once its bound has passed or end is called, in either
// case as a context whose deadline passed. pgx reports a statement whose context was
// cancelled as context.Canceled whether or not it had been sent, and one whose deadline
// passed as a timeout once sent (pgconn.Timeout), so that changedNothing can tell the two
// apart. Unlike the API's groupDeadline, which lasts until the latest deadline of its
// requests (and no later than a grace after the first), it has a bound of its own (attemptTimeout, after which retry counts the database
// as not answering) and ends early once every handler waiting for it has gone, because a
// handler's context ends when the worker stops or its channel closes, and then its message
// is delivered again and nothing waits for the statement's outcome.
type groupContext struct {
	context.Context // the values; it never ends
	deadline        time.Time
	done            chan struct{}
	once            sync.Once
	abandoned       atomic.Bool // ended because no handler waits for it any longer
}

// newGroupContext returns a groupContext bounded by bound; call stop once done with it.
func newGroupContext(parent context.Context, bound time.Duration) (c *groupContext, stop func()) {
	c = &groupContext{Context: context.WithoutCancel(parent), deadline: time.Now().Add(bound), done: make(chan struct{})}
	t := time.AfterFunc(bound, func() { c.end(false) })
	return c, func() {
		t.Stop()
		c.end(false)
	}
}

// end ends c; abandoned tells that every handler's context ended.
func (c *groupContext) end(abandoned bool) {
	c.once.Do(func() {
		c.abandoned.Store(abandoned)
		close(c.done)
	})
}

func (c *groupContext) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *groupContext) Done() <-chan struct{}       { return c.done }

func (c *groupContext) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
