package worker

import (
	"time"

	"orderflow/internal/group/grouptest"
)

// HoldExpiryWriter keeps the writer of the OrderExpired notifications busy until release is
// called; waiting tells how many notifications wait for it meanwhile.
func (w *Worker) HoldExpiryWriter() (waiting func() int, release func()) {
	blocker := &expiryNote{done: make(chan struct{})}
	release = grouptest.Hold(w.expiries.groups, blocker, blocker.done, func(group []*expiryNote) {
		for _, n := range group {
			close(n.done)
		}
	})
	return w.expiries.groups.Waiting, release
}

// SetAttemptTimeout sets the bound of one attempt of a handler's database work.
func (w *Worker) SetAttemptTimeout(d time.Duration) { w.attemptTimeout = d }
