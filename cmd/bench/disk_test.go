package main

import (
	"math"
	"testing"
	"time"
)

func TestDiskProbeSecondWorst(t *testing.T) {
	start := time.Now()
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	p := &diskProbe{start: start, syncs: []probeSync{
		{start.Add(-ms(1500)), ms(90)}, // begun before a restart
		{start.Add(ms(10)), ms(3)}, {start.Add(ms(900)), ms(40)}, {start.Add(ms(990)), ms(2)},
		{start.Add(ms(2100)), ms(30)},
		{start.Add(ms(3100)), ms(80)}, // after the load's seconds
	}}
	got, err := p.secondWorst(3)
	if err != nil || len(got) != 3 || got[0] != 40 || !math.IsNaN(got[1]) || got[2] != 30 {
		t.Fatalf("slowest sync by second = %v, %v; want [40 NaN 30]", got, err)
	}
}

func TestDiskProbeSyncs(t *testing.T) {
	p, err := startDiskProbe(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	time.Sleep(5 * probeInterval)
	got, err := p.secondWorst(1)
	if err != nil || len(got) == 0 || !(got[0] >= 0) {
		t.Fatalf("slowest sync by second = %v, %v; want one figure at least", got, err)
	}
}

func TestSlowTogether(t *testing.T) {
	nan := math.NaN()
	p99s := []float64{30, 10, 50, 60, 70, nan}
	syncs := []float64{nan, 40, 5, 5, 90, 100}
	// Second 0: no slow sync; 2: one the second before; 3: none in 2 or 3; 4: in 4; 5: no calls.
	if got := slowTogether(p99s, syncs, 25); got != 2 {
		t.Errorf("slow seconds that met a slow sync = %d, want 2", got)
	}
}
