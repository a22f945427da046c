package worker

import (
	"context"
	"errors"
	"testing"
	"time"
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
// the handler that runs it is cancelled, as long as another waits for it.
func TestOrderBatchOutlivesACancelledWriter(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	run := func(ctx context.Context, items []*batchItem[struct{}]) (map[int]bool, error) {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
		changed := map[int]bool{}
		for _, it := range items {
			changed[it.orderID] = true
		}
		return changed, nil
	}
	release, outcomes := startBatch(t, run, cancelled, context.Background())
	cancel() // whichever of the two writes the group, the other still waits for it
	release()
	for range 2 {
		if err := <-outcomes; err != nil {
			t.Fatalf("call: %v, want the order changed", err)
		}
	}
}

// TestOrderBatchEndsOnceEveryCallerIsCancelled: a statement that no caller waits for any
// longer is cut short with the cause of the last cancellation, but not by an attempt's
// deadline, which the statement's own bound replaces.
func TestOrderBatchEndsOnceEveryCallerIsCancelled(t *testing.T) {
	t.Parallel()
	errStop := errors.New("stopping")
	first, cancelFirst := context.WithCancelCause(context.Background())
	second, cancelSecond := context.WithCancelCause(context.Background())
	timed, cancelTimed := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelTimed()
	started := make(chan struct{})
	run := func(ctx context.Context, _ []*batchItem[struct{}]) (map[int]bool, error) {
		close(started)
		<-ctx.Done()
		return nil, context.Cause(ctx)
	}
	release, outcomes := startBatch(t, run, first, second, timed)
	release()
	<-started
	cancelFirst(errStop)
	select {
	case err := <-outcomes:
		t.Fatalf("a call returned (%v) while another still waits", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancelSecond(errStop)
	for range 3 {
		select {
		case err := <-outcomes:
			if !errors.Is(err, errStop) {
				t.Fatalf("call: %v, want %v", err, errStop)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the statement went on after every caller was cancelled")
		}
	}
}
