package outbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	"orderflow/configuration"
	"orderflow/platform/bus"
)

// brokerGone fails every message as a publisher does whose channel closed before the
// broker confirmed: the broker's fault, not the rows'.
type brokerGone struct{ err error }

func (brokerGone) WaitReady(context.Context) error { return nil }
func (p brokerGone) PublishBatch(_ context.Context, msgs []bus.Message) []error {
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = fmt.Errorf("wait for confirm of %s: %w", m.ID, p.err)
	}
	return errs
}

// TestRelayLeavesUnconfirmedRowsUnpublished: rows the broker did not confirm (channel
// closed, blocked by an alarm, no confirm in time) stay unpublished and untouched, so the
// next round publishes them: a broker restart loses no event.
func TestRelayLeavesUnconfirmedRowsUnpublished(t *testing.T) {
	t.Parallel()
	for _, cause := range []error{fmt.Errorf("channel closed"), bus.ErrBlocked, context.DeadlineExceeded} {
		t.Run(cause.Error(), func(t *testing.T) {
			e := newEnv(t)
			e.write(t, 5)
			r := NewRelay(e.pool, brokerGone{cause}, e.cfg.Outbox, testLogger())
			n, published, err := r.round(context.Background(), oldestFirst)
			if n != 5 || published != 0 || err == nil {
				t.Fatalf("round = %d claimed, %d published, %v; want 5, 0 and an error", n, published, err)
			}
			if got := unpublished(t, e.pool); got != 5 {
				t.Fatalf("%d rows unpublished after the broker confirmed none, want 5", got)
			}
			var touched int
			if err := e.pool.QueryRow(`SELECT count(*) FROM outbox WHERE attempts > 0 OR last_error IS NOT NULL OR next_attempt_at IS NOT NULL`).Scan(&touched); err != nil || touched != 0 {
				t.Errorf("%d rows recorded as failed (%v), want none: the broker's fault, not theirs", touched, err)
			}
			// The broker is back: the next round publishes them.
			r = NewRelay(e.pool, bus.NewPublisher(e.conn), e.cfg.Outbox, testLogger())
			if _, _, err := r.round(context.Background(), oldestFirst); err != nil {
				t.Fatal(err)
			}
			if got := unpublished(t, e.pool); got != 0 {
				t.Errorf("%d rows unpublished once the broker is back, want 0", got)
			}
		})
	}
}

// refusedFirst fails a batch as the publisher does when the broker closed its channel over
// the first message (larger than its max_message_size, say): that one refused, the others
// not taken.
type refusedFirst struct{}

func (refusedFirst) WaitReady(context.Context) error { return nil }
func (refusedFirst) PublishBatch(_ context.Context, msgs []bus.Message) []error {
	errs := make([]error, len(msgs))
	for i := range msgs {
		errs[i] = fmt.Errorf("no confirm of %s: channel closed", msgs[0].ID)
	}
	errs[0] = fmt.Errorf("publish %s: %w: PRECONDITION_FAILED", msgs[0].ID, bus.ErrRefused)
	return errs
}

// TestRelayHoldsBackARefusedRowAlone: a row over which the broker closed the publishing
// channel is held back as its own failure, so that it does not come first in every round and
// hold back the rows behind it, which stay untouched and go out in the next round.
func TestRelayHoldsBackARefusedRowAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Held back for twice the poll interval: long enough not to be due again in this test.
	e.cfg.Outbox.PollInterval = configuration.Duration(time.Hour)
	e.write(t, 5)
	n, published, err := NewRelay(e.pool, refusedFirst{}, e.cfg.Outbox, testLogger()).round(context.Background(), oldestFirst)
	if n != 5 || published != 0 || err == nil {
		t.Fatalf("round = %d claimed, %d published, %v; want 5, 0 and an error", n, published, err)
	}
	var held, touched int
	if err := e.pool.QueryRow(`SELECT count(*) FILTER (WHERE next_attempt_at > now() AND last_error LIKE '%refused%'),
		count(*) FILTER (WHERE attempts > 0 OR last_error IS NOT NULL OR next_attempt_at IS NOT NULL) FROM outbox`).Scan(&held, &touched); err != nil {
		t.Fatal(err)
	}
	if held != 1 || touched != 1 {
		t.Fatalf("%d rows held back as refused and %d touched, want the refused one alone", held, touched)
	}
	r := NewRelay(e.pool, bus.NewPublisher(e.conn), e.cfg.Outbox, testLogger())
	if _, published, err := r.round(context.Background(), oldestFirst); published != 4 || err != nil {
		t.Fatalf("next round published %d (%v), want the 4 rows behind the refused one", published, err)
	}
	if got := unpublished(t, e.pool); got != 1 {
		t.Errorf("%d rows unpublished, want the refused one, held back", got)
	}
}
