package main

import (
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

	mu     sync.Mutex
	start  time.Time
	last   uint64   // the count at the last reading
	pages  []uint64 // pages written out in each second since start
	failed error
}

const writebackInterval = 100 * time.Millisecond

// startWriteback starts a meter of the pages the machine writes out (/proc/vmstat).
func startWriteback() (*writebackMeter, error) {
	return startWritebackOf(pagesWrittenOut)
}

func startWritebackOf(read func() (uint64, error)) (*writebackMeter, error) {
	w := &writebackMeter{read: read, stop: make(chan struct{}), done: make(chan struct{})}
	if err := w.restart(); err != nil {
		return nil, err
	}
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
// in at's second. A reading taken before a restart is left out.
func (w *writebackMeter) add(at time.Time, n uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if at.Before(w.start) || n < w.last {
		return
	}
	i := int(at.Sub(w.start) / time.Second)
	for len(w.pages) <= i {
		w.pages = append(w.pages, 0)
	}
	w.pages[i] += n - w.last
	w.last = n
}

// restart forgets the seconds so far: the meter's seconds count from now.
func (w *writebackMeter) restart() error {
	n, err := w.read()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.start, w.last, w.pages = time.Now(), n, nil
	return nil
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
			out[i] = float64(w.pages[i]) * float64(os.Getpagesize()) / (1 << 20)
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

// writebackSettings describes when the kernel writes dirty pages back, from /proc/sys/vm.
func writebackSettings() string {
	get := func(name string) string {
		b, err := os.ReadFile("/proc/sys/vm/" + name)
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(b))
	}
	bg := "vm.dirty_background_ratio " + get("dirty_background_ratio") + "% of memory"
	if b := get("dirty_background_bytes"); b != "0" && b != "?" {
		bg = "vm.dirty_background_bytes " + b
	}
	expire := get("dirty_expire_centisecs")
	if cs, err := strconv.Atoi(expire); err == nil {
		expire = (time.Duration(cs) * 10 * time.Millisecond).String()
	}
	return fmt.Sprintf("once they have waited %s (vm.dirty_expire_centisecs) or pass %s", expire, bg)
}

// medianOf is the median of the figures that are not NaN (the nearest rank, as
// latencies.quantile takes it), NaN where there are none.
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
	return s[(len(s)+1)/2-1]
}

// worstAt returns the largest of per-second figures and its second, counted from 1 (0 where
// none is a number).
func worstAt(seconds []float64) (worst float64, second int) {
	worst = math.NaN()
	for i, v := range seconds {
		if v > worst || math.IsNaN(worst) && !math.IsNaN(v) {
			worst, second = v, i+1
		}
	}
	return worst, second
}
