package api

import (
	"context"
	"slices"
)

// stockStripes is the number of in-process locks that products are spread over: enough that
// orders in flight rarely share a stripe without sharing a product (with 15 two-product
// orders in flight, their products take up to 30 of the 4096 stripes, and a new two-product
// order would share one in about one case in seventy).
const stockStripes = 4096

// stockLocks queue this process's orders for the same product in Go, one at a time, before
// they reach PostgreSQL. A popular product's row lock is then waited for by at most one
// transaction per API process: waiting in the database costs lock-manager work on every
// attempt, waiting here costs nothing. Products share a lock only when their ids fall on
// the same stripe.
type stockLocks struct {
	stripes [stockStripes]chan struct{}
}

func newStockLocks() *stockLocks {
	l := &stockLocks{}
	for i := range l.stripes {
		l.stripes[i] = make(chan struct{}, 1)
	}
	return l
}

// lock takes the locks of the given products in stripe order and returns the function that
// releases them. It gives up when ctx ends. An order waits for the stripes that another holds,
// but since every order takes them in the same order, never in a cycle: there is no deadlock.
func (l *stockLocks) lock(ctx context.Context, productIDs []int64) (func(), error) {
	idx := make([]int, 0, len(productIDs))
	for _, id := range productIDs {
		idx = append(idx, int(uint64(id)%stockStripes))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for i, s := range idx {
		select {
		case l.stripes[s] <- struct{}{}:
		case <-ctx.Done():
			l.release(idx[:i])
			return nil, ctx.Err()
		}
	}
	return func() { l.release(idx) }, nil
}

func (l *stockLocks) release(idx []int) {
	for i := len(idx) - 1; i >= 0; i-- {
		<-l.stripes[idx[i]]
	}
}
