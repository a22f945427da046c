package worker

import (
	"context"
	"time"

	"orderflow/events"
	"orderflow/internal/group/grouptest"
	"orderflow/platform/bus"
)

// HoldExpiryWriter keeps the writer of the OrderExpired notifications busy until release is
// called; waiting tells how many notifications wait for it meanwhile.
func (w *Worker) HoldExpiryWriter() (waiting func() int, release func()) { return hold(w.expiries) }

// HoldClaimWriter keeps the writer of the claims of new orders (pending -> processing) busy
// until release is called; waiting tells how many claims wait for it meanwhile.
func (w *Worker) HoldClaimWriter() (waiting func() int, release func()) { return hold(w.claims) }

// HoldCompletionWriter keeps the writer of the completions of paid orders (processing ->
// completed) busy until release is called; waiting tells how many completions wait for it
// meanwhile.
func (w *Worker) HoldCompletionWriter() (waiting func() int, release func()) {
	return hold(w.completions)
}

func hold[T any](b *orderBatch[T]) (waiting func() int, release func()) {
	blocker := &batchItem[T]{done: make(chan struct{})}
	release = grouptest.Hold(b.groups, blocker, blocker.done, func(items []*batchItem[T]) {
		for _, it := range items {
			close(it.done)
		}
	})
	return b.groups.Waiting, release
}

// SetAttemptTimeout sets the bound of one attempt of a handler's database work.
func (w *Worker) SetAttemptTimeout(d time.Duration) { w.attemptTimeout = d }

// SettleGrace is how long a decided outcome's transaction may go on after its delivery was
// interrupted, or after its e-mail went out.
const SettleGrace = settleGrace

// Dispatch passes ev, carried by env, to the handler of its type, and waits out a payment.
func (w *Worker) Dispatch(ctx context.Context, env events.Envelope, ev events.Event) error {
	return bus.Finish(ctx, w.dispatch(ctx, env, ev, false))
}

// ErrNoHandler is the error of an event of a type that the worker does not handle.
var ErrNoHandler = errNoHandler

// HoldDeclineWriter keeps the writer of the declined payments busy until release is called;
// waiting tells how many declines wait for it meanwhile.
func (w *Worker) HoldDeclineWriter() (waiting func() int, release func()) { return hold(w.declines) }
