package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"orderflow/platform/db"
)

// startBatch starts do for each context at once on a batch whose statement is held back
// until every call waits, and returns the calls' outcomes. run is the statement.
func startBatch(t *testing.T, run func(context.Context, []*batchItem[struct{}]) (map[int]bool, error), ctxs ...context.Context) (release func(), outcomes <-chan error) {
	t.Helper()
	b := newOrderBatch(&Worker{attemptTimeout: 10 * time.Second}, 10, run)
	waiting, release := hold(b)
	out := make(chan error, len(ctxs))
	for i, ctx := range ctxs {
		go func() {
			changed, err := b.do(ctx, i+1, struct{}{})
			if err == nil && !changed {
				err = errors.New("not changed")
			}
			out <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for waiting() < len(ctxs) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls waiting after 5s", waiting(), len(ctxs))
		}
		time.Sleep(time.Millisecond)
	}
	return release, out
}

// TestOrderBatchOutlivesACancelledWriter: the statement of a group runs to its end although
// the handler that runs it is cancelled, as long as another waits for it. Which of the two
// runs it is up to the scheduler, so the test takes rounds enough for the cancelled one to
// run it in some of them (each round misses with a chance of one half).
func TestOrderBatchOutlivesACancelledWriter(t *testing.T) {
	t.Parallel()
	run := func(ctx context.Context, items []*batchItem[struct{}]) (map[int]bool, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		changed := map[int]bool{}
		for _, it := range items {
			changed[it.orderID] = true
		}
		return changed, nil
	}
	for round := range 20 {
		cancelled, cancel := context.WithCancel(context.Background())
		release, outcomes := startBatch(t, run, cancelled, context.Background())
		cancel()
		release()
		for range 2 {
			if err := <-outcomes; err != nil {
				t.Fatalf("round %d: call: %v, want the order changed", round, err)
			}
		}
	}
}

// TestOrderBatchEndsOnceEveryCallerIsCancelled: a statement that no caller waits for any
// longer, each cancelled or out of time, is cut short as if its deadline had passed, so that
// changedNothing can tell whether it was sent.
func TestOrderBatchEndsOnceEveryCallerIsCancelled(t *testing.T) {
	t.Parallel()
	first, cancelFirst := context.WithCancel(context.Background())
	second, cancelSecond := context.WithCancel(context.Background())
	timed, cancelTimed := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelTimed()
	started := make(chan struct{})
	run := func(ctx context.Context, _ []*batchItem[struct{}]) (map[int]bool, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	release, outcomes := startBatch(t, run, first, second, timed)
	release()
	<-started
	cancelFirst()
	select {
	case err := <-outcomes:
		t.Fatalf("a call returned (%v) while another still waits", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancelSecond()
	for range 3 {
		select {
		case err := <-outcomes:
			if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, db.ErrNoAnswer) || !failedWhole(err) {
				t.Fatalf("call: %v, want the group's failure by its context's deadline", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the statement went on after every caller was cancelled")
		}
	}
}

// TestOrderBatchIsBounded: a statement that does not end by itself is cut off after the
// worker's attemptTimeout, and its callers are told that the database did not answer.
func TestOrderBatchIsBounded(t *testing.T) {
	t.Parallel()
	b := newOrderBatch(&Worker{attemptTimeout: 50 * time.Millisecond}, 10, func(ctx context.Context, _ []*batchItem[struct{}]) (map[int]bool, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	_, err := b.do(context.Background(), 1, struct{}{})
	if !errors.Is(err, db.ErrNoAnswer) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("do: %v, want no answer within the bound", err)
	}
}

// TestOrderBatchSurvivesAPanic: a statement that panics fails its group, and the batch takes
// the next group.
func TestOrderBatchSurvivesAPanic(t *testing.T) {
	t.Parallel()
	panics := true
	b := newOrderBatch(&Worker{attemptTimeout: time.Second}, 10, func(context.Context, []*batchItem[struct{}]) (map[int]bool, error) {
		if panics {
			panics = false
			panic("mailer exploded")
		}
		return map[int]bool{1: true}, nil
	})
	if _, err := b.do(context.Background(), 1, struct{}{}); !failedWhole(err) || !strings.Contains(err.Error(), "mailer exploded") {
		t.Fatalf("do: %v, want the group failed by the panic", err)
	}
	if changed, err := b.do(context.Background(), 1, struct{}{}); err != nil || !changed {
		t.Fatalf("do after the panic: %v, %v; want the order changed", changed, err)
	}
}
