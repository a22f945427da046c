package main

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWritebackMeterSeconds(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	w := &writebackMeter{last: 1000, written: newSecondFigures(func(a, b float64) float64 { return a + b })}
	start := w.written.start
	w.add(start.Add(-ms(50)), 1100) // taken before a restart: the base of the next reading
	w.add(start.Add(ms(100)), 1356)
	w.add(start.Add(ms(900)), 1612)
	w.add(start.Add(ms(2500)), 1868) // after a second without a reading
	w.add(start.Add(ms(3200)), 1000) // a count that went back
	mib := func(pages float64) float64 { return pages * float64(os.Getpagesize()) / (1 << 20) }

	got, err := w.written.first(5)
	if err != nil || len(got) != 5 || got[0] != mib(512) || !math.IsNaN(got[1]) || got[2] != mib(256) ||
		!math.IsNaN(got[3]) || !math.IsNaN(got[4]) {
		t.Fatalf("MiB by second = %v, %v; want [%v NaN %v NaN NaN]", got, err, mib(512), mib(256))
	}
}

func TestWritebackMeterReadsTheMachine(t *testing.T) {
	if _, err := pagesWrittenOut(); err != nil {
		t.Skipf("this machine's count of pages written out cannot be read: %v", err)
	}
	w, err := startWriteback()
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(writebackInterval) {
		got, err := w.written.first(1)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MiB by second = %v after 5s; want a figure", got)
		}
	}
}

func TestVMStatCounter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmstat")
	if err := os.WriteFile(path, []byte("nr_dirty 12\nnr_written 345\nnr_written_x 6\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := vmstatCounter(path, "nr_written"); err != nil || n != 345 {
		t.Errorf("nr_written = %d, %v; want 345", n, err)
	}
	if _, err := vmstatCounter(path, "nr_dirtied"); err == nil {
		t.Error("a counter the file lacks was read")
	}
}

func TestWorstAtAndMedian(t *testing.T) {
	nan := math.NaN()
	if worst, at := worstAt([]float64{nan, 3, 9, 9, 1}); worst != 9 || at != 3 {
		t.Errorf("worstAt = %v in second %d, want 9 in second 3", worst, at)
	}
	if worst, at := worstAt([]float64{nan}); !math.IsNaN(worst) || at != 0 {
		t.Errorf("worstAt of no figure = %v in second %d, want NaN in second 0", worst, at)
	}
	if m := medianOf([]float64{5, nan, 1, 9, 3}); m != 3 {
		t.Errorf("median = %v, want 3", m)
	}
	if m := medianOf(nil); !math.IsNaN(m) {
		t.Errorf("median of nothing = %v, want NaN", m)
	}
}
