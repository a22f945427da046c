package main

import (
	"math"
	"testing"
	"time"
)

func TestDiskProbeSyncs(t *testing.T) {
	p, err := startDiskProbe(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	// The first sync may take long on a disk the database keeps busy.
	var got []float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(probeInterval) {
		if got, err = p.syncs.first(1); err == nil && len(got) > 0 && got[0] >= 0 {
			return
		}
	}
	t.Fatalf("slowest sync by second = %v, %v; want one figure at least", got, err)
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
