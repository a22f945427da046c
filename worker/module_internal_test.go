package worker

import (
	"io"
	"log/slog"
	"testing"

	"orderflow/configuration"
)

func TestNewFromConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	w := NewFromConfig(&cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if w.opts.PaymentDelay != cfg.Orders.PaymentDelay.D() || w.opts.CompletionProbability != cfg.Orders.CompletionProbability {
		t.Fatalf("payment %s at probability %v, want the configuration's %s at %v", w.opts.PaymentDelay, w.opts.CompletionProbability,
			cfg.Orders.PaymentDelay.D(), cfg.Orders.CompletionProbability)
	}
	// At least 3,000 payments in flight, so that 500 orders per second pass a 5 s payment
	// and a second of claiming and completing it.
	if w.opts.MaxPaymentsInFlight < 3000 {
		t.Fatalf("%d payments in flight, want at least 3000", w.opts.MaxPaymentsInFlight)
	}
	// Options without a limit take the configuration's default.
	if n := New(nil, slog.New(slog.DiscardHandler), Options{}).opts.MaxPaymentsInFlight; n != cfg.Orders.MaxPaymentsInFlight {
		t.Errorf("%d payments in flight without a limit in Options, the configuration's default %d", n, cfg.Orders.MaxPaymentsInFlight)
	}
}
