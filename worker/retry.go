package worker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"orderflow/platform/db"
)

// Back-off of a handler waiting for the database: doubled after each failed attempt, capped,
// with jitter so that thousands of waiting handlers do not retry in step.
const (
	minRetryDelay = 100 * time.Millisecond
	maxRetryDelay = 5 * time.Second
)

// attemptTimeout bounds one attempt of a handler's database work. Its statements take
// milliseconds, so an attempt still waiting after this long is taken to wait on a database
// that stopped answering without closing the connection (a host that went away, a failover
// behind the same address), which TCP would report only after up to a quarter of an hour,
// while the handler kept its message and, with enough of them, the worker took no more
// events. pgx closes the connection, and the attempt counts as the database being
// unavailable: it is retried on a new connection. Like a dropped connection, an attempt cut
// off after its statement was sent may have committed (see changedNothing).
const attemptTimeout = 30 * time.Second

// retry runs op, each attempt with a context that ctx bounds and that ends after
// attemptTimeout, until it succeeds, fails with an error other than the database being
// unavailable or a conflict with another transaction, or ctx ends (then it returns op's
// last error). Only unavailability counts as an outage, logged once at its start and once
// at its end.
//
// A handler waits for the database here, keeping its message, instead of returning the
// error for the message to be requeued: every requeue counts toward the queue's delivery
// limit, so an outage of a few seconds would otherwise send the events in flight to the
// dead-letter queue. When the worker stops during an outage, ctx ends and the message is
// requeued once.
func (w *Worker) retry(ctx context.Context, op func(ctx context.Context) error) error {
	delay := minRetryDelay
	for {
		err := db.Bounded(ctx, w.attemptTimeout, op)
		if err == nil {
			if w.outage.CompareAndSwap(true, false) {
				w.log.InfoContext(ctx, "database available again")
			}
			return nil
		}
		if !waitedOut(err) || ctx.Err() != nil {
			return err
		}
		down := db.Unavailable(err)
		if down && w.outage.CompareAndSwap(false, true) {
			w.log.WarnContext(ctx, "database unavailable: handlers keep their messages and retry", slog.Any("error", err))
		}
		jitter := time.Duration(rand.Int64N(int64(delay) / 2))
		if sleep(ctx, delay-delay/4+jitter) != nil {
			return err
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// waitedOut tells whether retry tries op again after err: the database was unavailable, or
// the transaction conflicted with another.
func waitedOut(err error) bool { return db.Unavailable(err) || conflicted(err) }

// changedNothing reports an error of a statement run without a transaction of its own (as
// the claim is) after which the statement surely changed nothing (db.NotSent). It holds for
// a statement run by Exec, and for one run by QueryContext whose rows are read by orderIDs,
// unless the rows were cut off (errAnswerCut): the statement had run by then.
func changedNothing(err error) bool {
	return !errors.Is(err, errAnswerCut) && db.NotSent(err)
}

// conflicted reports an error with which PostgreSQL rolled a transaction back for a conflict
// with another one (a serialization failure, a deadlock): the database answers, and the
// same work run again may succeed. Two worker processes handling copies of one event can
// deadlock this way.
func conflicted(err error) bool {
	code := db.Code(err)
	return code == db.SerializationFailure || code == db.DeadlockDetected
}
