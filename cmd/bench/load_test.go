package main

import (
	"math"
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
