package bus

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// After is what a Handler returns when its delivery is not done but has to wait: the
// consumer calls then once wait has passed, or at once when the delivery's context ends
// (then tells the two apart by ctx.Err()), and settles the delivery by what then returns,
// which may be After again. Meanwhile the delivery holds a timer instead of a goroutine, so
// thousands of deliveries can wait at once for the cost of their messages. ctx is the
// delivery's context, as the Handler had it.
func After(wait time.Duration, then func(ctx context.Context) error) error {
	return &later{wait: wait, then: then}
}

// later is the error value of After.
type later struct {
	wait time.Duration
	then func(ctx context.Context) error
}

func (l *later) Error() string {
	return fmt.Sprintf("bus: the handler continues after %s (bus.After, for a Consumer or Finish)", l.wait)
}

// Finish runs what a Handler left for later, as a Consumer does but waiting in the calling
// goroutine, and returns the Handler's final result: err itself when it is not After. It is
// for callers of a handler other than a Consumer.
func Finish(ctx context.Context, err error) error {
	for {
		var l *later
		if !errors.As(err, &l) {
			return err
		}
		t := time.NewTimer(l.wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		err = l.then(ctx)
	}
}
