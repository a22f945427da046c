package main

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestSecondFigures(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := newSecondFigures(math.Max)
	start := s.start
	s.add(start.Add(-ms(1500)), 90) // taken before a restart
	s.add(start.Add(ms(10)), 3)
	s.add(start.Add(ms(900)), 40)
	s.add(start.Add(ms(990)), 2)
	s.add(start.Add(ms(2100)), 30)
	s.add(start.Add(ms(3100)), 80) // after the seconds asked for
	got, err := s.first(3)
	if err != nil || len(got) != 3 || got[0] != 40 || !math.IsNaN(got[1]) || got[2] != 30 {
		t.Fatalf("slowest by second = %v, %v; want [40 NaN 30]", got, err)
	}

	stopped := errors.New("read /proc/vmstat: gone")
	s.fail(stopped)
	s.restart()
	if got, err := s.first(1); err != stopped || len(got) != 1 || !math.IsNaN(got[0]) {
		t.Errorf("after a failure and a restart, figures = %v, %v; want [NaN] and the error", got, err)
	}
}
