// Package group lets concurrent callers share the writing of their items: the items that
// wait together are written together, a group at a time, by one of the callers, with no
// goroutine of its own. The API stores new orders this way, and the worker claims orders
// for their payment, completes paid ones and records the notifications of expired ones.
package group

import (
	"slices"
	"sync"
)

// Writer queues items and lets their callers write them in groups.
//
// One caller may write at a time, and more (up to writers in all) only while a whole group
// is waiting. Under a moderate load the one writer's next group takes what arrived during
// its last, so that one statement and one commit serve several items; under a heavy load,
// or while a write is slow, every writer works.
type Writer[T any] struct {
	max   int
	first chan struct{} // the writer a caller may always become
	extra chan struct{} // the others, for a caller that finds a whole group waiting

	mu    sync.Mutex
	queue []T
}

// NewWriter returns a Writer of groups of at most max items, written by up to writers
// callers at once.
func NewWriter[T any](writers, max int) *Writer[T] {
	w := &Writer[T]{max: max, first: make(chan struct{}, 1)}
	if writers > 1 {
		w.extra = make(chan struct{}, writers-1)
	}
	return w
}

// Write queues item and returns once done is closed. While it waits, the caller may become
// a writer: it then takes groups of at most max items from the queue, oldest first, and
// passes each to write, until done is closed or the queue is empty (another writer took
// item's group). write must close the done channel of every item it is given.
func (w *Writer[T]) Write(item T, done <-chan struct{}, write func(group []T)) {
	w.mu.Lock()
	w.queue = append(w.queue, item)
	full := len(w.queue) >= w.max
	w.mu.Unlock()
	var extra chan struct{} // nil, which never takes a send, unless a whole group is waiting
	if full {
		extra = w.extra
	}
	var slot chan struct{}
	select {
	case <-done:
		return
	case w.first <- struct{}{}:
		slot = w.first
	case extra <- struct{}{}:
		slot = w.extra
	}
	w.writeUntil(done, write)
	<-slot
	<-done // written by this caller, or by the writer that took it from the queue
}

// writeUntil writes groups from the queue until done is closed or the queue is empty.
func (w *Writer[T]) writeUntil(done <-chan struct{}, write func(group []T)) {
	for {
		select {
		case <-done:
			return
		default:
		}
		group := w.take()
		if len(group) == 0 {
			return
		}
		write(group)
	}
}

// Waiting is the number of items queued and not yet taken by a writer.
func (w *Writer[T]) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// take removes the oldest max items from the queue.
func (w *Writer[T]) take() []T {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(len(w.queue), w.max)
	group := slices.Clone(w.queue[:n])
	w.queue = slices.Delete(w.queue, 0, n)
	return group
}
