package main

import (
	"math"
	"sync"
	"time"
)

// secondFigures keeps what a sampler running beside a load measures, by the second, counted
// from its start, which restart moves to the moment the load's measurement begins. combine
// makes one figure of two samples of a second: the slowest of the disk probe's syncs, the sum
// of what the machine wrote out.
type secondFigures struct {
	combine func(a, b float64) float64

	mu      sync.Mutex
	start   time.Time
	figures []float64 // NaN for a second without a sample
	failed  error
}

func newSecondFigures(combine func(a, b float64) float64) secondFigures {
	return secondFigures{combine: combine, start: time.Now()}
}

// restart forgets the seconds so far: they count from now.
func (s *secondFigures) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.start, s.figures = time.Now(), nil
}

// add counts the sample v, taken at at, in at's second; one taken before a restart is left
// out.
func (s *secondFigures) add(at time.Time, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.Before(s.start) {
		return
	}
	i := int(at.Sub(s.start) / time.Second)
	for len(s.figures) <= i {
		s.figures = append(s.figures, math.NaN())
	}
	if math.IsNaN(s.figures[i]) {
		s.figures[i] = v
	} else {
		s.figures[i] = s.combine(s.figures[i], v)
	}
}

// fail records the error that stopped the sampler.
func (s *secondFigures) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed = err
}

// first returns the figures of the first n seconds since the start or the last restart, NaN
// for a second without a sample, and the error that stopped the sampler.
func (s *secondFigures) first(n int) ([]float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]float64, n)
	for i := range out {
		out[i] = math.NaN()
		if i < len(s.figures) {
			out[i] = s.figures[i]
		}
	}
	return out, s.failed
}
