package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The kernel writes a file's dirty pages to disk once they have waited
// vm.dirty_expire_centisecs (30 s by default), or sooner once the machine's dirty pages pass
// vm.dirty_background_bytes (or vm.dirty_background_ratio of its memory, which a load seldom
// reaches on a machine with much of it). The data files that PostgreSQL extends and writes
// during a load then go to disk together, up to half a minute of them at once, and a commit
// whose WAL sync comes behind that writeback waits for it, the API's and pgbench's alike. A
// writebackMeter reads the machine's count of pages written out every writebackInterval while
// a load runs and keeps what each second wrote. Unlike the disk probe, it writes nothing of
// its own.
type writebackMeter struct {
	read func() (uint64, error) // the machine's pages written out so far
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	start time.Time
	last  uint64 // the count at the last reading
	// pages is what was written out in each second since start, NaN for a second without a
	// reading (the next reading counts what it missed).
	pages  []float64
	failed error
}

const writebackInterval = 100 * time.Millisecond

// startWriteback starts a meter of the pages the machine writes out (/proc/vmstat).
func startWriteback() (*writebackMeter, error) {
	return startWritebackOf(pagesWrittenOut)
}

func startWritebackOf(read func() (uint64, error)) (*writebackMeter, error) {
	n, err := read()
	if err != nil {
		return nil, err
	}
	w := &writebackMeter{read: read, stop: make(chan struct{}), done: make(chan struct{}), start: time.Now(), last: n}
	go w.run()
	return w, nil
}

func (w *writebackMeter) run() {
	defer close(w.done)
	tick := time.NewTicker(writebackInterval)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		n, err := w.read()
		if err != nil {
			w.mu.Lock()
			w.failed = err
			w.mu.Unlock()
			return
		}
		w.add(time.Now(), n)
	}
}

// add counts what was written out between the last reading and the reading n taken at at,
// in at's second. A reading taken before a restart is left out of the seconds.
func (w *writebackMeter) add(at time.Time, n uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n < w.last { // the kernel's count only grows
		return
	}
	written := n - w.last
	w.last = n
	if at.Before(w.start) {
		return
	}
	i := int(at.Sub(w.start) / time.Second)
	for len(w.pages) <= i {
		w.pages = append(w.pages, math.NaN())
	}
	if math.IsNaN(w.pages[i]) {
		w.pages[i] = 0
	}
	w.pages[i] += float64(written)
}

// restart forgets the seconds so far: the meter's seconds count from now, and its first
// reading after now counts what was written since the last one, up to writebackInterval
// before. It reads nothing itself, as it is called on a load's schedule, and returns the
// error that stopped the meter.
func (w *writebackMeter) restart() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.start, w.pages = time.Now(), nil
	return w.failed
}

// close stops the meter.
func (w *writebackMeter) close() {
	close(w.stop)
	<-w.done
}

// perSecond returns the MiB written out in each of the first seconds seconds since the
// meter started or restarted, NaN for a second it has no reading for, and the error that
// stopped it.
func (w *writebackMeter) perSecond(seconds int) ([]float64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]float64, seconds)
	for i := range out {
		out[i] = math.NaN()
		if i < len(w.pages) {
			out[i] = w.pages[i] * float64(os.Getpagesize()) / (1 << 20) // NaN stays NaN
		}
	}
	return out, w.failed
}

// pagesWrittenOut is the machine's count of pages written out to disk since it started.
func pagesWrittenOut() (uint64, error) { return vmstatCounter("/proc/vmstat", "nr_written") }

// vmstatCounter reads the counter name from a file of "name value" lines such as /proc/vmstat.
func vmstatCounter(path, name string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == name {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, name)
}

// writebackSettings describes when the kernel writes dirty pages back, from /proc/sys/vm,
// or says that it could not read that.
func writebackSettings() string {
	read := func(name string) (int64, error) {
		b, err := os.ReadFile("/proc/sys/vm/" + name)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	expire, err1 := read("dirty_expire_centisecs")
	bgBytes, err2 := read("dirty_background_bytes")
	ratio, err3 := read("dirty_background_ratio")
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Sprintf("as this machine's settings say (not read: %v)", err)
	}
	age := "never by age (vm.dirty_expire_centisecs 0)"
	if expire > 0 {
		age = fmt.Sprintf("once they have waited %s (vm.dirty_expire_centisecs)", time.Duration(expire)*10*time.Millisecond)
	}
	amount := fmt.Sprintf("vm.dirty_background_ratio %d%% of memory", ratio)
	if bgBytes > 0 {
		amount = fmt.Sprintf("vm.dirty_background_bytes %d MiB", bgBytes>>20)
	}
	return age + " or pass " + amount
}

// medianOf is the median of the figures that are not NaN, as latencies.quantile takes it,
// NaN where there are none.
func medianOf(vs []float64) float64 {
	s := slices.Sorted(func(yield func(float64) bool) {
		for _, v := range vs {
			if !math.IsNaN(v) && !yield(v) {
				return
			}
		}
	})
	if len(s) == 0 {
		return math.NaN()
	}
	return s[nearestRank(len(s), 0.5)]
}

// secondFigure is the figure of second (counted from 1) among per-second figures, NaN where
// there is none.
func secondFigure(seconds []float64, second int) float64 {
	if second < 1 || second > len(seconds) {
		return math.NaN()
	}
	return seconds[second-1]
}

// secondNo writes a second counted from 1, "-" for none (0).
func secondNo(second int) string {
	if second == 0 {
		return "-"
	}
	return strconv.Itoa(second)
}
