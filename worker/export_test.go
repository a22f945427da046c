package worker

// HoldExpiryWriter keeps the writer of the OrderExpired notifications busy until release is
// called; waiting tells how many notifications wait for it meanwhile.
func (w *Worker) HoldExpiryWriter() (waiting func() int, release func()) {
	busy, free := make(chan struct{}), make(chan struct{})
	blocker := &expiryNote{done: make(chan struct{})}
	go w.expiries.groups.Write(blocker, blocker.done, func(group []*expiryNote) {
		close(busy)
		<-free
		for _, n := range group {
			close(n.done)
		}
	})
	<-busy
	return w.expiries.groups.Waiting, func() { close(free) }
}
