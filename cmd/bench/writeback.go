package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
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
	stop chan struct{}
	done chan struct{}
	last uint64 // the count at the last reading, run's own
	// written is the MiB written out in each second (the next reading after a second without
	// one counts what it missed).
	written secondFigures
}

const writebackInterval = 100 * time.Millisecond

// startWriteback starts a meter of the pages the machine writes out (/proc/vmstat).
func startWriteback() (*writebackMeter, error) {
	n, err := pagesWrittenOut()
	if err != nil {
		return nil, err
	}
	w := &writebackMeter{stop: make(chan struct{}), done: make(chan struct{}), last: n,
		written: newSecondFigures(func(a, b float64) float64 { return a + b })}
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
		n, err := pagesWrittenOut()
		if err != nil {
			w.written.fail(err)
			return
		}
		w.add(time.Now(), n)
	}
}

// add counts what was written out between the last reading and the reading n taken at at,
// in at's second.
func (w *writebackMeter) add(at time.Time, n uint64) {
	if n < w.last { // the kernel's count only grows
		return
	}
	pages := n - w.last
	w.last = n
	w.written.add(at, float64(pages)*float64(os.Getpagesize())/(1<<20))
}

// close stops the meter.
func (w *writebackMeter) close() {
	close(w.stop)
	<-w.done
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
