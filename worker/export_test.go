package worker

// HoldExpiryWriter keeps the writer of the OrderExpired notifications busy until release is
// called; waiting tells how many notifications wait for it meanwhile.
func (w *Worker) HoldExpiryWriter() (waiting func() int, release func()) {
	w.expiries.writer <- struct{}{}
	waiting = func() int {
		w.expiries.mu.Lock()
		defer w.expiries.mu.Unlock()
		return len(w.expiries.queue)
	}
	return waiting, func() { <-w.expiries.writer }
}
