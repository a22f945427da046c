package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"orderflow/configuration"
	"orderflow/events"
	"orderflow/platform/bus"
	"orderflow/platform/db"
)

// Timings of the relay that are not configurable.
const (
	// publishTimeout bounds publishing one batch and waiting for its confirms.
	publishTimeout = 10 * time.Second
	// roundTimeout bounds a whole round, its statements and its publishing: see Relay.round.
	roundTimeout = publishTimeout + 20*time.Second
	// maxBackoff caps the wait after a round that failed without publishing a row (it
	// doubles from pollInterval).
	maxBackoff = 10 * time.Second
	// maxRetryDelay caps how long a row whose publishing failed is held back (the delay
	// doubles from twice pollInterval with each failed attempt).
	maxRetryDelay = time.Minute
	// pruneInterval is how often published rows older than the retention are deleted.
	pruneInterval = 10 * time.Minute
	// pruneChunk is how many rows one prune statement deletes.
	pruneChunk = 5000
	// gather is how long a woken relay waits for more events before it claims them.
	gather = 2 * time.Millisecond
)

// Publisher publishes a batch with confirms; *bus.Publisher implements it.
type Publisher interface {
	PublishBatch(ctx context.Context, msgs []bus.Message) []error
	// WaitReady returns nil at once when the broker is connected, even with an ended ctx.
	WaitReady(ctx context.Context) error
}

// Relay publishes the outbox's unpublished rows, oldest first (newest first while it stops).
// Each round claims a batch with FOR UPDATE SKIP LOCKED, publishes it with all confirms
// outstanding, and marks the confirmed rows published in the same transaction, so several
// relays never publish a row twice unless one dies between publishing and committing (then
// at most that batch is published again).
// A round starts when a transaction of this process that wrote events commits (Wake), every
// pollInterval otherwise, and at once after a full batch.
//
// A row that fails (the broker refuses or cannot route it, or its headers do not decode)
// records the error and is held back for a delay that doubles with each attempt, so that rows
// that keep failing never fill the batches and hold back the others. A row that the broker did
// not take through no fault of its own (publishing blocked by an alarm, the connection lost,
// no confirm in time) stays as it is. Only a round that fails without publishing a row (the
// database failing, or none of its rows published) makes the relay itself wait longer; a
// round that finds no row due waits for the next wake-up or poll as usual.
type Relay struct {
	pool      *sql.DB
	pub       Publisher
	log       *slog.Logger
	batchSize int
	poll      time.Duration
	retention time.Duration
	prune     time.Duration
	// roundTimeout bounds a round, and a prune statement: the constant roundTimeout, shorter
	// in tests.
	roundTimeout time.Duration

	// afterPublish, when set, runs after a batch is published and before it is marked; an
	// error aborts the round as a crash would (tests).
	afterPublish func() error
	// beforePrune, when set, runs before each prune statement (tests).
	beforePrune func()

	wake    chan struct{}
	stop    chan struct{}
	stopped sync.Once
	// drainUntil is when drain starts no more rounds, in Unix nanoseconds: half of what was
	// left of Stop's deadline when Stop was called (0: no deadline).
	drainUntil atomic.Int64
	done       sync.WaitGroup
	// ctx is the context of the relay's work: Stop cancels it when its deadline passes, and
	// the loop once it has drained (ending a prune statement still running).
	ctx    context.Context
	cancel context.CancelFunc
}

// NewRelay returns a relay over the outbox table of pool, publishing with pub.
func NewRelay(pool *sql.DB, pub Publisher, cfg configuration.Outbox, log *slog.Logger) *Relay {
	poll := cfg.PollInterval.D()
	if poll <= 0 {
		poll = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Relay{
		pool: pool, pub: pub, log: log.With("component", "outbox-relay"),
		batchSize: max(cfg.BatchSize, 1), poll: poll, retention: cfg.Retention.D(),
		prune: pruneInterval, roundTimeout: roundTimeout,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		ctx:  ctx, cancel: cancel,
	}
}

// Start runs the relay in the background and returns at once. Pruning runs beside the
// rounds, so that deleting a large backlog of old rows delays no event.
func (r *Relay) Start() {
	unsubscribe := subscribe(r.wake)
	r.done.Add(2)
	go func() {
		defer r.done.Done()
		defer unsubscribe()
		r.run()
	}()
	go func() {
		defer r.done.Done()
		r.pruneEvery()
	}()
}

// Stop lets the round in progress finish (its publishing is bounded by publishTimeout),
// publishes the rows that are due while the broker is connected, newest first, for up to half
// of what is left of ctx's deadline (see drain), and stops. When ctx ends first, it cancels
// the round, which rolls back: its rows stay unpublished (or, if the broker confirmed them,
// are published again by the next relay).
func (r *Relay) Stop(ctx context.Context) error {
	r.stopped.Do(func() {
		if deadline, ok := ctx.Deadline(); ok {
			r.drainUntil.Store(time.Now().Add(time.Until(deadline) / 2).UnixNano())
		}
		close(r.stop)
	})
	select {
	case <-r.ended():
		return nil
	case <-ctx.Done():
		r.cancel()
		return fmt.Errorf("stop outbox relay: %w", ctx.Err())
	}
}

// ended returns a channel closed once the relay's loop and its pruning have returned.
func (r *Relay) ended() <-chan struct{} {
	ended := make(chan struct{})
	go func() {
		r.done.Wait()
		close(ended)
	}()
	return ended
}

func (r *Relay) stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// run is the relay loop.
func (r *Relay) run() {
	ctx := r.ctx
	defer r.cancel()
	crashed := false
	defer func() {
		if !crashed {
			r.drain(ctx)
		}
	}()
	poll := time.NewTicker(r.poll)
	defer poll.Stop()
	backoff := r.poll
	for !r.stopping() {
		// Claiming rows while the broker is down would hold their locks for the publish
		// timeout; wait for the connection instead (the rows keep accumulating).
		if err := r.waitReady(); err != nil {
			return
		}
		n, published, err := r.round(ctx, oldestFirst)
		switch {
		case errors.Is(err, errCrash):
			crashed = true
			return
		case err != nil && published > 0:
			r.log.Warn("outbox events not published, each retried later", "error", err)
		case err != nil:
			r.log.Warn("outbox relay round failed", "retry_in", backoff, "error", err)
			// A commit tells that the database is back, not that the broker took anything.
			var unpublished unpublishedError
			if !r.backOff(backoff, !errors.As(err, &unpublished)) {
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = r.poll
		if n == r.batchSize {
			continue // more are probably waiting
		}
		select {
		case <-r.wake:
			// Let the commits of the next moment join this round: under load a round then
			// carries many events for its four statements instead of a few.
			if !r.sleep(gather) {
				return
			}
		case <-poll.C:
		case <-r.stop:
			return
		}
	}
}

// drain publishes, once the relay is stopping, the rows that are due, newest first: those
// that its process's consumers and requests committed while they drained (they stop before
// the relay), which another relay would find only at its next poll, come before a backlog
// that other processes wrote too. It does not wait for a broker that is not connected, and
// it ends after a round that fails or comes back short, or, leaving a backlog to the other
// relays and the next start, once drainUntil has passed; Stop's deadline cancels the round
// in progress.
func (r *Relay) drain(ctx context.Context) {
	// WaitReady with an ended context tells whether the broker is connected, without
	// waiting for it.
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if r.pub.WaitReady(ended) != nil {
		return
	}
	for published := 0; ; {
		if until := r.drainUntil.Load(); until != 0 && time.Now().UnixNano() > until {
			r.log.Info("outbox relay stopped with events still due; the other relays and the next start publish them",
				"published", published)
			return
		}
		n, done, err := r.round(ctx, newestFirst)
		published += done
		if err != nil || n < r.batchSize {
			return
		}
	}
}

func (r *Relay) waitReady() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return r.pub.WaitReady(ctx)
}

// sleep waits d or until Stop; false means stopping.
func (r *Relay) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-r.stop:
		return false
	}
}

// backOff waits d after a failed round, or until Stop (false). After a round that the
// database failed (wakeable), a commit of this process that wrote events (Wake) ends the
// wait once pollInterval has passed: the database took that commit, so it is likely back, and
// its events should not wait out the rest of a back-off of up to maxBackoff. A wake during
// the first pollInterval stays in r.wake for then, so that a round that keeps failing is
// retried no more than once a pollInterval however busy the process is.
func (r *Relay) backOff(d time.Duration, wakeable bool) bool {
	if !wakeable {
		return r.sleep(d)
	}
	first := min(r.poll, d)
	if !r.sleep(first) {
		return false
	}
	select {
	case <-time.After(d - first):
		return true
	case <-r.wake:
		return true
	case <-r.stop:
		return false
	}
}

// errCrash ends the relay after an afterPublish failure, as a crash would.
var errCrash = errors.New("relay crashed")

type row struct {
	id         int64
	eventID    uuid.UUID
	eventType  string
	routingKey string
	payload    []byte
	headers    []byte
	createdAt  time.Time
}

// round claims, publishes and marks one batch in one transaction and returns how many rows
// it claimed and how many of them it published.
//
// The round is given roundTimeout in all (db.Bounded), so that a database that stops
// answering holds the relay no longer. A round cut off after publishing leaves its rows
// unmarked, to be published again, as after a crash.
func (r *Relay) round(ctx context.Context, order claimOrder) (claimed, published int, err error) {
	err = db.Bounded(ctx, r.roundTimeout, func(ctx context.Context) error {
		claimed, published, err = r.roundWithin(ctx, order)
		return err
	})
	return claimed, published, err
}

// roundWithin is round without its bound: claim, publish, and record each row's outcome in
// the claim's transaction.
func (r *Relay) roundWithin(ctx context.Context, order claimOrder) (claimed, published int, err error) {
	tx, err := r.pool.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := claim(ctx, tx, r.batchSize, order)
	if err != nil || len(rows) == 0 {
		return 0, 0, err
	}
	errs := r.publish(ctx, rows)
	if r.afterPublish != nil {
		if err := r.afterPublish(); err != nil {
			return 0, 0, errCrash
		}
	}
	out := sortOutcomes(rows, errs)
	if err := r.record(ctx, tx, out); err != nil {
		return 0, 0, err
	}
	if err := db.Commit(ctx, tx); err != nil {
		return 0, 0, err
	}
	return len(rows), len(out.done), out.err(len(rows))
}

// publish publishes rows as one batch and returns each row's outcome, nil for a row the
// broker confirmed. A row whose headers do not decode fails here, unsent.
func (r *Relay) publish(ctx context.Context, rows []row) []error {
	errs := make([]error, len(rows))
	var msgs []bus.Message
	var sent []int // the rows of msgs
	for i, rw := range rows {
		var headers map[string]string
		if len(rw.headers) > 0 {
			if err := json.Unmarshal(rw.headers, &headers); err != nil {
				errs[i] = fmt.Errorf("outbox row %d: %w: %w", rw.id, errHeaders, err)
				continue
			}
		}
		msgs = append(msgs, bus.Message{
			ID: rw.eventID.String(), Type: rw.eventType, RoutingKey: rw.routingKey,
			ContentType: events.ContentType, Body: rw.payload, Time: rw.createdAt, Headers: headers,
		})
		sent = append(sent, i)
	}
	if len(msgs) > 0 {
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		for k, err := range r.pub.PublishBatch(pctx, msgs) {
			errs[sent[k]] = err
		}
		cancel()
	}
	return errs
}

// outcomes are the rows of a round sorted by what publishing them came to.
type outcomes struct {
	done, failed []int64  // published; failed through a fault of their own (rowFailure)
	reasons      []string // the errors of failed
	untaken      int      // rows the broker did not take, through no fault of theirs
	untakenErr   error    // the first of their errors
}

// sortOutcomes sorts rows by errs, each row's outcome.
func sortOutcomes(rows []row, errs []error) outcomes {
	var out outcomes
	for i, err := range errs {
		switch {
		case err == nil:
			out.done = append(out.done, rows[i].id)
		case rowFailure(err):
			out.failed = append(out.failed, rows[i].id)
			out.reasons = append(out.reasons, err.Error())
		default:
			// The broker blocked publishing, went away or did not confirm in time: the row
			// stays as it is, due at once, and the relay waits for the broker instead.
			out.untaken++
			if out.untakenErr == nil {
				out.untakenErr = err
			}
		}
	}
	return out
}

// record marks the published rows and holds back the failed ones, inside tx.
func (r *Relay) record(ctx context.Context, tx *sql.Tx, out outcomes) error {
	if len(out.done) > 0 {
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)`, out.done)
		if err != nil {
			return fmt.Errorf("mark %d rows published: %w", len(out.done), err)
		}
	}
	if len(out.failed) > 0 {
		// Held back for twice pollInterval after the first failure, doubling up to
		// maxRetryDelay: twice the relay's own wait after rounds that publish nothing, so
		// that a batch of rows that keep failing is not due again when the relay next claims.
		_, err := tx.ExecContext(ctx, `UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.reason,
				next_attempt_at = now() + least(make_interval(secs => $3 * power(2, least(o.attempts + 1, 20))), make_interval(secs => $4))
			FROM unnest($1::bigint[], $2::text[]) AS f(id, reason) WHERE o.id = f.id`,
			out.failed, out.reasons, r.poll.Seconds(), maxRetryDelay.Seconds())
		if err != nil {
			return fmt.Errorf("record %d failures: %w", len(out.failed), err)
		}
	}
	return nil
}

// unpublishedError is a round's error when the database did its part but rows were not
// published: the broker's fault or the rows' own.
type unpublishedError struct{ error }

func (e unpublishedError) Unwrap() error { return e.error }

// err reports the rows of a round of total rows that were not published, nil when all were.
func (out outcomes) err(total int) error {
	var err error
	if len(out.failed) > 0 {
		err = fmt.Errorf("%d of %d events not published, first: %s", len(out.failed), total, out.reasons[0])
	}
	if out.untaken > 0 {
		err = errors.Join(err, fmt.Errorf("%d of %d events not taken by the broker: %w", out.untaken, total, out.untakenErr))
	}
	if err == nil {
		return nil
	}
	return unpublishedError{err}
}

// errHeaders marks a row whose headers do not decode.
var errHeaders = errors.New("headers do not decode")

// rowFailure tells whether a publishing error is the row's own: its headers do not decode,
// or the broker refused (a nack, or a channel closed over it) or could not route it. Such a
// row is held back (next_attempt_at); any other error is the broker's.
func rowFailure(err error) bool {
	return errors.Is(err, errHeaders) || errors.Is(err, bus.ErrNacked) || errors.Is(err, bus.ErrRefused) ||
		errors.Is(err, bus.ErrReturned)
}

// claimOrder is the order in which a round claims rows: by id, as they were written.
type claimOrder string

const (
	oldestFirst claimOrder = "ASC"
	newestFirst claimOrder = "DESC"
)

// claim locks the unpublished rows that are due, up to limit, the oldest or the newest first
// as order says.
func claim(ctx context.Context, tx *sql.Tx, limit int, order claimOrder) ([]row, error) {
	rs, err := tx.QueryContext(ctx, `SELECT id, event_id, event_type, routing_key, payload, headers, created_at
		FROM outbox WHERE published_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= now())
		ORDER BY id `+string(order)+` LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var rw row
		if err := rs.Scan(&rw.id, &rw.eventID, &rw.eventType, &rw.routingKey, &rw.payload, &rw.headers, &rw.createdAt); err != nil {
			return nil, fmt.Errorf("claim outbox rows: %w", err)
		}
		rows = append(rows, rw)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	return rows, nil
}

// pruneEvery prunes at once and then every prune interval, until Stop or the end of the
// relay's work.
func (r *Relay) pruneEvery() {
	tick := time.NewTicker(r.prune)
	defer tick.Stop()
	for {
		r.pruneOld(r.ctx)
		select {
		case <-tick.C:
		case <-r.stop:
			return
		case <-r.ctx.Done():
			return
		}
	}
}

// pruneOld deletes published rows older than the retention, in chunks, each given
// roundTimeout, as a round is.
func (r *Relay) pruneOld(ctx context.Context) {
	total := int64(0)
	for !r.stopping() {
		if r.beforePrune != nil {
			r.beforePrune()
		}
		var n int64
		err := db.Bounded(ctx, r.roundTimeout, func(ctx context.Context) error {
			res, err := r.pool.ExecContext(ctx, `DELETE FROM outbox WHERE id IN (
				SELECT id FROM outbox WHERE published_at < now() - $1 * interval '1 microsecond'
				LIMIT $2 FOR UPDATE SKIP LOCKED)`, r.retention.Microseconds(), pruneChunk)
			if err == nil {
				n, err = res.RowsAffected()
			}
			return err
		})
		if err != nil {
			if !r.stopping() { // else Stop's end of the relay's work cancelled it
				r.log.Warn("prune outbox", "error", err)
			}
			return
		}
		total += n
		if n < pruneChunk {
			break
		}
	}
	if total > 0 {
		r.log.Info("pruned published outbox rows", "rows", total, "retention", r.retention)
	}
}
