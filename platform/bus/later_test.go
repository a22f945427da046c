package bus

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// TestAfterWaitsWithoutAGoroutine: a thousand deliveries whose handlers return After wait at
// once without a goroutine each, every one goes on after its wait (through a second After),
// and each is acknowledged once its last step returns nil. Not parallel, so that the count of
// goroutines is this test's own.
func TestAfterWaitsWithoutAGoroutine(t *testing.T) {
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	// The wait is long enough for every delivery to arrive within it on a loaded host; one
	// whose wait is over before the last arrives only runs its steps, without waiting.
	const n, wait = 1000, 3 * time.Second
	var waiting, early, done atomic.Int64
	cons := NewConsumer(c, "c", n, func(ctx context.Context, d Delivery) error {
		start := time.Now()
		waiting.Add(1)
		return After(wait/2, func(ctx context.Context) error {
			return After(wait/2, func(ctx context.Context) error {
				if ctx.Err() != nil || time.Since(start) < wait {
					early.Add(1)
				}
				done.Add(1)
				return nil
			})
		})
	})
	cons.Start()
	defer cons.Stop(context.Background())
	base := runtime.NumGoroutine()

	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = message(testKey, i)
	}
	for _, err := range NewPublisher(c).PublishBatch(context.Background(), msgs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "every delivery waiting", func() bool { return waiting.Load() == n })
	if extra, d := runtime.NumGoroutine()-base, done.Load(); extra > n/10 {
		t.Errorf("%d goroutines more while %d deliveries wait, want at most %d", extra, n-d, n/10)
	}
	ch := testenv.AdminChannel(t, cfg)
	queue := c.Topology().QueueName("c")
	testutil.Eventually(t, 20*time.Second, "every delivery acknowledged", func() bool {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		return err == nil && done.Load() == n && q.Messages == 0 && cons.running.Load() == 0
	})
	if e := early.Load(); e > 0 {
		t.Errorf("%d deliveries went on before their wait was over, or with their context ended", e)
	}
}

// TestAfterIsCutShortByStop: a delivery waiting in After when the stop deadline passes goes
// on at once with its context ended, and its message is requeued.
func TestAfterIsCutShortByStop(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	waiting := make(chan struct{}, 1)
	var interrupted atomic.Int64
	cons := NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		waiting <- struct{}{}
		return After(time.Hour, func(ctx context.Context) error {
			if ctx.Err() == nil {
				return errors.New("went on with its context still live")
			}
			interrupted.Add(1)
			return ctx.Err()
		})
	})
	cons.Start()
	publish(t, c, 1)
	<-waiting
	start := time.Now()
	stopPastDeadline(t, cons, 200*time.Millisecond)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop took %s", took)
	}
	if interrupted.Load() != 1 {
		t.Error("the waiting delivery did not go on with its context ended")
	}
	ch := testenv.AdminChannel(t, cfg)
	testutil.Eventually(t, 10*time.Second, "the message back in the queue", func() bool {
		return queueLength(t, ch, c.Topology().QueueName("c")) == 1
	})
}

// TestAfterIsCutShortByADroppedChannel: when the channel of a waiting delivery closes, the
// delivery goes on at once with ErrChannelClosed as its context's cause, and the consumer's
// new subscription gets the message again, redelivered.
func TestAfterIsCutShortByADroppedChannel(t *testing.T) {
	t.Parallel()
	cfg := rabbitConfig(t)
	c := startConn(t, cfg, Options{Queues: testQueues()})
	waiting := make(chan struct{}, 1)
	var cut, redelivered atomic.Int64
	cons := NewConsumer(c, "c", 10, func(ctx context.Context, d Delivery) error {
		if d.Redelivered {
			redelivered.Add(1)
			return nil
		}
		waiting <- struct{}{}
		return After(time.Hour, func(ctx context.Context) error {
			if errors.Is(context.Cause(ctx), ErrChannelClosed) {
				cut.Add(1)
			}
			return ctx.Err()
		})
	})
	cons.Start()
	defer cons.Stop(context.Background())
	publish(t, c, 1)
	<-waiting
	if n := testenv.CloseConnections(t, c.name); n != 1 {
		t.Fatalf("closed %d connections, want 1", n)
	}
	testutil.Eventually(t, 30*time.Second, "the message delivered again", func() bool { return redelivered.Load() == 1 })
	if cut.Load() != 1 {
		t.Error("the waiting delivery did not go on with ErrChannelClosed")
	}
}

// TestFinish: Finish runs a handler's later steps in the calling goroutine, after their
// waits, or at once once its context has ended, and returns the last step's result.
func TestFinish(t *testing.T) {
	t.Parallel()
	failed := errors.New("failed")
	if err := Finish(context.Background(), failed); err != failed {
		t.Errorf("Finish of a plain error: %v", err)
	}
	if err := Finish(context.Background(), nil); err != nil {
		t.Errorf("Finish of nil: %v", err)
	}

	start := time.Now()
	var steps int
	err := Finish(context.Background(), After(20*time.Millisecond, func(ctx context.Context) error {
		steps++
		return After(20*time.Millisecond, func(ctx context.Context) error {
			steps++
			return failed
		})
	}))
	if !errors.Is(err, failed) || steps != 2 {
		t.Errorf("Finish of two steps: %v after %d steps, want %v after 2", err, steps, failed)
	}
	if took := time.Since(start); took < 40*time.Millisecond {
		t.Errorf("two waits of 20ms took %s", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	err = Finish(ctx, After(time.Hour, func(ctx context.Context) error { return ctx.Err() }))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Finish with its context ended: %v, want %v", err, context.Canceled)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Finish with its context ended took %s", took)
	}
}
