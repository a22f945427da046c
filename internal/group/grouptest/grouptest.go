// Package grouptest helps tests of group.Writer's users form groups at will.
package grouptest

import "orderflow/internal/group"

// Hold keeps a writer of w busy until release is called, so that the items written
// meanwhile wait in w's queue, as they do behind a slow write. It writes item, whose done
// channel is done, as a group that finish answers once released: finish must close the
// done channel of every item it is given.
func Hold[T any](w *group.Writer[T], item T, done <-chan struct{}, finish func(group []T)) (release func()) {
	busy, free := make(chan struct{}), make(chan struct{})
	go w.Write(item, done, func(group []T) {
		close(busy)
		<-free
		finish(group)
	})
	<-busy
	return func() { close(free) }
}
