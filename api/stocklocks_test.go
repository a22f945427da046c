package api

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestStockLocks(t *testing.T) {
	t.Parallel()
	l := newStockLocks()

	// Products on one stripe (1 and 1+stockStripes) share a lock, taken once.
	unlock, err := l.lock(context.Background(), []int64{1, 1 + stockStripes, 7})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.lock(ctx, []int64{7}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a held product was locked again: %v", err)
	}
	other, err := l.lock(context.Background(), []int64{2})
	if err != nil {
		t.Fatal(err)
	}
	other()
	unlock()

	// Orders listing the same products in opposite order do not deadlock.
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := []int64{3, 4, 5}
			if i%2 == 1 {
				ids = []int64{5, 4, 3}
			}
			u, err := l.lock(context.Background(), ids)
			if err != nil {
				t.Error(err)
				return
			}
			u()
		}()
	}
	wg.Wait()

	// An attempt that gives up releases what it took.
	held, err := l.lock(context.Background(), []int64{7})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := l.lock(ctx2, []int64{3, 7}); err == nil {
		t.Fatal("locked a held product")
	}
	held()
	ctx3, cancel3 := context.WithTimeout(context.Background(), time.Second)
	defer cancel3()
	u, err := l.lock(ctx3, []int64{1, 3, 4, 5, 7})
	if err != nil {
		t.Fatalf("locks left held: %v", err)
	}
	u()
}
