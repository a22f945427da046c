package main

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// phase is what one load phase measured.
type phase struct {
	Clients int     `json:"clients,omitempty"`
	Rate    float64 `json:"rate,omitempty"`
	Done    int     `json:"done"`
	// Warm is the calls of a fixed-rate phase's warm-up, made but not measured.
	Warm       int           `json:"warmUpDone,omitempty"`
	Errors     int           `json:"errors"`
	Elapsed    time.Duration `json:"elapsed"`
	Throughput float64       `json:"throughput"`
	P50        float64       `json:"p50Ms"`
	P99        float64       `json:"p99Ms"`
	FirstError string        `json:"firstError,omitempty"`
	// CPU is the CPU time per operation, where the phase was measured with readCPU.
	CPU *cpuPerOp `json:"cpuMsPerOp,omitempty"`
	// SecondP99 is the p99 of each second of a fixed-rate phase, the calls grouped by the
	// second in which they were due: it shows whether the tail is spread or a few stalls.
	SecondP99 []float64 `json:"secondP99Ms,omitempty"`
	// SecondDiskSync is the slowest sync of the disk probe (diskProbe) begun in each second of
	// a fixed-rate phase, in ms, where the phase was measured with a meter and the disk could be
	// probed.
	SecondDiskSync []float64 `json:"secondDiskSyncMs,omitempty"`
	// SecondWriteback is the MiB the machine wrote out to disk in each second of a fixed-rate
	// phase (writebackMeter), where the phase was measured with a meter and /proc/vmstat could
	// be read.
	SecondWriteback []float64 `json:"secondWritebackMiB,omitempty"`
	// WALPerOp is the WAL the server wrote per operation during the phase, in bytes, where
	// the phase was measured with a meter.
	WALPerOp float64 `json:"walBytesPerOp,omitempty"`
	// Checkpoints is the checkpoints the server began during the phase, where the phase was
	// measured with a meter.
	Checkpoints *int `json:"checkpointsBegun,omitempty"`
	lat         latencies
	cpu         cpuTimes
}

func (p *phase) finish(lat latencies) {
	p.lat = lat
	p.Done = len(lat)
	p.Throughput = float64(p.Done) / p.Elapsed.Seconds()
	p.P50, p.P99 = lat.quantile(0.50), lat.quantile(0.99)
}

// MarshalJSON writes the latencies a phase has no figure for (NaN: none measured, or a
// second without calls) as null, which encoding/json would refuse to write.
func (p phase) MarshalJSON() ([]byte, error) {
	type plain phase // without this method
	return json.Marshal(struct {
		plain
		P50             *float64   `json:"p50Ms"`
		P99             *float64   `json:"p99Ms"`
		SecondP99       []*float64 `json:"secondP99Ms,omitempty"`
		SecondDiskSync  []*float64 `json:"secondDiskSyncMs,omitempty"`
		SecondWriteback []*float64 `json:"secondWritebackMiB,omitempty"`
	}{plain(p), orNull(p.P50), orNull(p.P99), orNulls(p.SecondP99), orNulls(p.SecondDiskSync), orNulls(p.SecondWriteback)})
}

// orNull is v, or nil for NaN: a figure that JSON writes as null where none was measured.
func orNull(v float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	return &v
}

func orNulls(vs []float64) []*float64 {
	if vs == nil {
		return nil
	}
	out := make([]*float64, len(vs))
	for i, v := range vs {
		out[i] = orNull(v)
	}
	return out
}

// errorLog remembers the number of failures and the first one.
type errorLog struct {
	n     atomic.Int64
	once  sync.Once
	first error
}

// bySecond collects latencies by the second of the phase in which each call was due.
type bySecond struct {
	mu      sync.Mutex
	seconds []latencies
}

func (b *bySecond) add(second int, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.seconds) <= second {
		b.seconds = append(b.seconds, nil)
	}
	b.seconds[second] = append(b.seconds[second], d)
}

// p99s is the p99 of each second, NaN for a second without calls.
func (b *bySecond) p99s() []float64 {
	out := make([]float64, len(b.seconds))
	for i, l := range b.seconds {
		out[i] = l.quantile(0.99)
	}
	return out
}

// secondsOver returns the worst of a phase's per-second p99s and the number above limit ms.
func (p phase) secondsOver(limit float64) (worst float64, over int) {
	return worstAndOver(p.SecondP99, limit)
}

// worstAndOver returns the largest of per-second figures (0 where none is a number) and the
// number above limit, NaN (a second without a figure) counting in neither.
func worstAndOver(seconds []float64, limit float64) (worst float64, over int) {
	worst, second := worstAt(seconds)
	if second == 0 {
		worst = 0
	}
	for _, v := range seconds {
		if v > limit { // false for NaN
			over++
		}
	}
	return worst, over
}

// worstAt returns the largest of per-second figures and its second, counted from 1: NaN and
// 0 where none is a number.
func worstAt(seconds []float64) (worst float64, second int) {
	worst = math.NaN()
	for i, v := range seconds {
		if v > worst || math.IsNaN(worst) && !math.IsNaN(v) {
			worst, second = v, i+1
		}
	}
	return worst, second
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

// call is one request of a load: do it with the worker's own random source.
type call func(ctx context.Context, rng *rand.Rand) error

// startWorkers runs n goroutines, each with its own random source, and work appends the
// latencies it measures to the slice it is given. The returned function waits for every
// goroutine and returns all the latencies.
func startWorkers(n int, seed time.Time, work func(rng *rand.Rand, lat *latencies)) (wait func() latencies) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		all latencies
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat latencies
			work(rand.New(rand.NewPCG(uint64(seed.UnixNano()), uint64(i))), &lat)
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	return func() latencies {
		wg.Wait()
		return all
	}
}

// closedLoop runs clients workers that each call do back to back for d, and measures
// every successful call. Calls still running after d are waited for, not cancelled, as
// pgbench -T waits for its transactions: a cancelled request would cost the api a database
// connection and load the phase that follows.
func closedLoop(ctx context.Context, clients int, d time.Duration, do call) phase {
	return backToBack(ctx, clients, -1, time.Now().Add(d), do)
}

// countLoop has clients workers call do back to back until n calls were made in all.
func countLoop(ctx context.Context, clients, n int, do call) phase {
	return backToBack(ctx, clients, n, time.Time{}, do)
}

// backToBack runs clients workers that call do back to back until n calls were made (no
// limit when n < 0), until is reached (none when zero) or ctx ends; failures after ctx
// ended are not counted.
func backToBack(ctx context.Context, clients, n int, until time.Time, do call) phase {
	var (
		next atomic.Int64
		errs errorLog
	)
	more := func() bool {
		return (n < 0 || next.Add(1) <= int64(n)) && (until.IsZero() || time.Now().Before(until)) && ctx.Err() == nil
	}
	start := time.Now()
	wait := startWorkers(clients, start, func(rng *rand.Rand, lat *latencies) {
		for more() {
			t := time.Now()
			if err := do(ctx, rng); err != nil {
				if ctx.Err() == nil {
					errs.add(err)
				}
				continue
			}
			*lat = append(*lat, time.Since(t))
		}
	})
	all := wait()
	p := phase{Clients: clients, Elapsed: time.Since(start)}
	errs.into(&p)
	p.finish(all)
	return p
}

// fixedRate starts calls of do at rate per second for warm and then d, whether or not earlier
// ones have finished (up to maxInFlight at once), and measures each call due in d from the
// moment it was due, so that a stall counts against every call it delays. The calls are due
// at the moments of a Poisson process (arrivals), as pgbench -R schedules its transactions
// and as independent clients arrive. The calls of warm bring the system from idle to the rate
// on the same schedule; they are counted in Warm and their errors in Errors, but not
// measured. measuring is called as the first measured call is due.
func fixedRate(ctx context.Context, rate float64, warm, d time.Duration, maxInFlight int, do call, measuring func()) phase {
	warmN, n := int(rate*warm.Seconds()), int(rate*d.Seconds())
	due := make(chan time.Time, warmN+n+1)
	var (
		errs    errorLog
		seconds bySecond
		warmed  atomic.Int64
	)
	offsets := arrivals(rate, warmN+n+1, 1)
	start := time.Now()
	// The first measured call is due then: the warm-up is warmN whole calls.
	from := start.Add(offsets[warmN])
	wait := startWorkers(maxInFlight, start, func(rng *rand.Rand, lat *latencies) {
		for at := range due {
			if ctx.Err() != nil {
				continue
			}
			if err := do(ctx, rng); err != nil {
				errs.add(err)
				continue
			}
			if at.Before(from) {
				warmed.Add(1)
				continue
			}
			d := time.Since(at)
			*lat = append(*lat, d)
			seconds.add(int(at.Sub(from)/time.Second), d)
		}
	})
	for i := range warmN + n {
		at := start.Add(offsets[i])
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		if i == warmN {
			measuring()
		}
		due <- at
	}
	close(due)
	all := wait()
	p := phase{Rate: rate, Elapsed: time.Since(from), Warm: int(warmed.Load())}
	errs.into(&p)
	p.finish(all)
	p.SecondP99 = seconds.p99s()
	// Throughput over the scheduled window, not the drain after it.
	p.Throughput = float64(p.Done) / d.Seconds()
	return p
}

// arrivals returns the moments, from the first, at which n calls arrive at rate per second
// on average as a Poisson process: independent gaps drawn from the exponential distribution
// of mean 1/rate. The draws are seeded, so that runs face the same schedule.
func arrivals(rate float64, n int, seed uint64) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, 0))
	out := make([]time.Duration, n)
	at := 0.0
	for i := range out {
		out[i] = time.Duration(at * float64(time.Second))
		at += rng.ExpFloat64() / rate
	}
	return out
}
