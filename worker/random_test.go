package worker

import (
	"io"
	"log/slog"
	"testing"
)

func TestDefaultRandomCompletesAboutHalf(t *testing.T) {
	t.Parallel()
	w := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{CompletionProbability: 0.5})
	const draws = 2000
	completed := 0
	for id := range draws {
		if w.paymentSucceeds(id + 1) {
			completed++
		}
	}
	// 45-55% holds with probability 1 - 8e-6 for a fair source (4.5 standard deviations).
	if share := float64(completed) / draws; share < 0.45 || share > 0.55 {
		t.Fatalf("default source completed %.1f%% of %d payments at probability 0.5, want 45-55%%", 100*share, draws)
	}
}

func TestCompletionProbabilityBounds(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	never := New(nil, log, Options{CompletionProbability: 0})
	always := New(nil, log, Options{CompletionProbability: 1})
	for id := 1; id <= 2000; id++ {
		if never.paymentSucceeds(id) {
			t.Fatal("a payment succeeded at probability 0")
		}
		if !always.paymentSucceeds(id) {
			t.Fatal("a payment was declined at probability 1")
		}
	}
}
