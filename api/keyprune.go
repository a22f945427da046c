package api

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"orderflow/platform/db"
)

const (
	// keyPruneInterval is how often each API process deletes expired Idempotency-Keys.
	keyPruneInterval = time.Minute
	// keyPruneChunk is how many keys one statement deletes, so that the keys piled up over
	// a long pause go in short transactions.
	keyPruneChunk = 5000
	// keyPruneTimeout bounds one statement, so that a database that stops answering does
	// not hold the pruner for as long as TCP takes to give up.
	keyPruneTimeout = 30 * time.Second
)

// keyPruner deletes the Idempotency-Keys older than idempotencyKeyTTL, apart from the
// requests: at start and then every keyPruneInterval, in chunks. The requests already treat
// an expired key as unknown (replay, claimIdempotencyKey, storeIdempotencyKey), so pruning
// only frees the space. The API processes prune side by side: each skips the keys another
// is deleting.
type keyPruner struct {
	db    *sql.DB
	log   *slog.Logger
	chunk int

	cancel context.CancelFunc
	done   chan struct{}
}

func newKeyPruner(pool *sql.DB, log *slog.Logger) *keyPruner {
	return &keyPruner{db: pool, log: log, chunk: keyPruneChunk}
}

// Start starts the loop, a pass at once and then one every keyPruneInterval, in a goroutine
// and returns at once. Start must be called at most once.
func (p *keyPruner) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(keyPruneInterval)
		defer t.Stop()
		for {
			p.prune(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop cancels the current statement, if any, and waits for the loop to end or for ctx to
// expire.
func (p *keyPruner) Stop(ctx context.Context) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// prune deletes the expired keys a chunk at a time, and returns how many it deleted. A
// failed statement is logged and ends the pass; the next pass starts over.
func (p *keyPruner) prune(ctx context.Context) int64 {
	cutoff := time.Now().Add(-idempotencyKeyTTL)
	total := int64(0)
	for ctx.Err() == nil {
		var n int64
		err := db.Bounded(ctx, keyPruneTimeout, func(ctx context.Context) error {
			res, err := p.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE id IN (
				SELECT id FROM idempotency_keys WHERE created_at <= $1
				LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff, p.chunk)
			if err == nil {
				n, err = res.RowsAffected()
			}
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("prune idempotency keys", "error", err)
			}
			break
		}
		total += n
		if n < int64(p.chunk) {
			break
		}
	}
	if total > 0 {
		p.log.Info("pruned expired idempotency keys", "keys", total, "ttl", idempotencyKeyTTL)
	}
	return total
}
