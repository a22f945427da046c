package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// phase is what one load phase measured.
type phase struct {
	Clients    int           `json:"clients,omitempty"`
	Rate       float64       `json:"rate,omitempty"`
	Done       int           `json:"done"`
	Errors     int           `json:"errors"`
	Elapsed    time.Duration `json:"elapsed"`
	Throughput float64       `json:"throughput"`
	P50        float64       `json:"p50Ms"`
	P99        float64       `json:"p99Ms"`
	FirstError string        `json:"firstError,omitempty"`
	// CPU is the CPU time per operation, where the phase was measured with readCPU.
	CPU *cpuPerOp `json:"cpuMsPerOp,omitempty"`
	lat latencies
	cpu cpuTimes
}

func (p *phase) finish(lat latencies) {
	p.lat = lat
	p.Done = len(lat)
	p.Throughput = float64(p.Done) / p.Elapsed.Seconds()
	p.P50, p.P99 = lat.quantile(0.50), lat.quantile(0.99)
}

// errorLog remembers the number of failures and the first one.
type errorLog struct {
	n     atomic.Int64
	once  sync.Once
	first error
}

func (l *errorLog) add(err error) {
	l.n.Add(1)
	l.once.Do(func() { l.first = err })
}

func (l *errorLog) into(p *phase) {
	p.Errors = int(l.n.Load())
	if l.first != nil {
		p.FirstError = l.first.Error()
	}
}

// closedLoop runs clients workers that each call do back to back for d, and measures
// every successful call.
func closedLoop(ctx context.Context, clients int, d time.Duration, do func(ctx context.Context, rng *rand.Rand) error) phase {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		all  latencies
		errs errorLog
	)
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i)))
			var lat latencies
			for ctx.Err() == nil {
				t := time.Now()
				if err := do(ctx, rng); err != nil {
					if ctx.Err() == nil {
						errs.add(err)
					}
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	p := phase{Clients: clients, Elapsed: time.Since(start)}
	errs.into(&p)
	p.finish(all)
	return p
}

// fixedRate starts calls of do at rate per second for d, whether or not earlier ones have
// finished (up to maxInFlight at once), and measures each from the moment it was due, so
// that a stall counts against every call it delays.
func fixedRate(ctx context.Context, rate float64, d time.Duration, maxInFlight int, do func(ctx context.Context, rng *rand.Rand) error) phase {
	type job struct{ due time.Time }
	jobs := make(chan job, int(rate*d.Seconds())+1)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		all  latencies
		errs errorLog
	)
	start := time.Now()
	for i := range maxInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i)))
			var lat latencies
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if err := do(ctx, rng); err != nil {
					errs.add(err)
					continue
				}
				lat = append(lat, time.Since(j.due))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		jobs <- job{due: due}
	}
	close(jobs)
	wg.Wait()
	p := phase{Rate: rate, Elapsed: time.Since(start)}
	errs.into(&p)
	p.finish(all)
	// Throughput over the scheduled window, not the drain after it.
	p.Throughput = float64(p.Done) / max(d.Seconds(), p.Elapsed.Seconds())
	return p
}
