package main

import (
	"math"
	"testing"
	"time"

	"orderflow/internal/testutil"
)

func TestDiskProbeSyncs(t *testing.T) {
	p, err := startDiskProbe(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	// The first sync may take long on a disk the database keeps busy.
	testutil.Eventually(t, 30*time.Second, "the slowest sync of a second", func() bool {
		got, err := p.syncs.first(1)
		return err == nil && len(got) > 0 && got[0] >= 0
	})
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
