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
	// queued counts the items ever queued, and taken those ever taken by a writer: the item
	// queued n-th (from 1) has been taken once taken >= n, since writers take the oldest.
	queued, taken int
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
// passes each to write, until it has written item's group or another writer has taken it.
// A writer thus writes no item queued after its own, whose wait could outlast its caller's.
// write must close the done channel of every item it is given; a write that panics leaves
// the writer's place free for the callers still waiting.
func (w *Writer[T]) Write(item T, done <-chan struct{}, write func(group []T)) {
	w.mu.Lock()
	w.queue = append(w.queue, item)
	w.queued++
	mine := w.queued
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
	func() {
		defer func() { <-slot }()
		w.writeThrough(mine, write)
	}()
	<-done // written by this caller, or by the writer that took it from the queue
}

// writeThrough writes groups from the queue until it has written the one holding the item
// queued mine-th, or finds it taken by another writer.
func (w *Writer[T]) writeThrough(mine int, write func(group []T)) {
	for {
		group := w.takeBefore(mine)
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

// takeBefore removes the oldest max items from the queue, or none once the item queued
// mine-th has been taken.
func (w *Writer[T]) takeBefore(mine int) []T {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.taken >= mine {
		return nil
	}
	n := min(len(w.queue), w.max)
	group := slices.Clone(w.queue[:n])
	w.queue = slices.Delete(w.queue, 0, n)
	w.taken += n
	return group
}
