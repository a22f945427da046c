package outbox

import "sync"

// relays holds the wake-up channels of the relays running in this process.
var relays = struct {
	sync.Mutex
	wake map[chan struct{}]struct{}
}{wake: make(map[chan struct{}]struct{})}

// Wake makes every relay of this process start a round as soon as it is free. Write calls it
// when its transaction commits; code that inserts outbox rows in SQL calls it after its own
// commit, so that the rows are published without waiting for the poll.
//
// A wake-up is cheaper than PostgreSQL's NOTIFY, which would serialize the commits of every
// transaction that writes an event, including their WAL flushes, behind one lock.
func Wake() {
	relays.Lock()
	defer relays.Unlock()
	for ch := range relays.wake {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// subscribe makes Wake signal ch; the returned function undoes it.
func subscribe(ch chan struct{}) (unsubscribe func()) {
	relays.Lock()
	relays.wake[ch] = struct{}{}
	relays.Unlock()
	return func() {
		relays.Lock()
		delete(relays.wake, ch)
		relays.Unlock()
	}
}
