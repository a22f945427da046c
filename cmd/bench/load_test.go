package main

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBySecond(t *testing.T) {
	var b bySecond
	for i := range 100 {
		b.add(0, time.Duration(i+1)*time.Millisecond) // 1..100 ms: p99 99 ms
	}
	b.add(2, 5*time.Millisecond)
	got := b.p99s()
	if len(got) != 3 || got[0] != 99 || !math.IsNaN(got[1]) || got[2] != 5 {
		t.Fatalf("p99 by second = %v, want [99 NaN 5]", got)
	}
	worst, over := phase{SecondP99: got}.secondsOver(25)
	if worst != 99 || over != 1 {
		t.Errorf("worst %v, over 25 ms %d; want 99 and 1", worst, over)
	}
}

// TestFixedRateCountsEveryMeasuredCall checks that a fixed-rate phase measures each call of
// its schedule after the warm-up's, also where the rate times the warm-up is not a whole
// number of calls.
func TestFixedRateCountsEveryMeasuredCall(t *testing.T) {
	noop := func(context.Context, *rand.Rand) error { return nil }
	measuring := 0
	// 1,000.5 calls/s: 10 calls of warm-up in 10 ms, then 20 measured.
	p := fixedRate(context.Background(), 1000.5, 10*time.Millisecond, 20*time.Millisecond, 4, noop, func() { measuring++ })
	if p.Warm != 10 || p.Done != 20 || measuring != 1 {
		t.Errorf("warm-up %d calls, measured %d, measuring called %d times; want 10, 20 and 1", p.Warm, p.Done, measuring)
	}
}

// TestArrivalsArePoisson: the gaps between calls average 1/rate and are spread as an
// exponential distribution's (standard deviation equal to the mean), so that a fixed-rate
// load arrives as pgbench -R's does, not evenly spaced.
func TestArrivalsArePoisson(t *testing.T) {
	const rate, n = 2000.0, 200_000
	at := arrivals(rate, n, 1)
	if at[0] != 0 {
		t.Errorf("first call at %v, want 0", at[0])
	}
	var sum, sq float64
	for i := 1; i < n; i++ {
		g := (at[i] - at[i-1]).Seconds()
		if g < 0 {
			t.Fatalf("call %d due before the one before it", i)
		}
		sum += g
		sq += g * g
	}
	mean := sum / (n - 1)
	sd := math.Sqrt(sq/(n-1) - mean*mean)
	if want := 1 / rate; math.Abs(mean-want) > 0.01*want || math.Abs(sd-want) > 0.02*want {
		t.Errorf("gaps: mean %.3g s, standard deviation %.3g s; want both %.3g s", mean, sd, want)
	}
	if again := arrivals(rate, n, 1); again[n-1] != at[n-1] {
		t.Error("the same seed gave another schedule")
	}
}
