package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// size is the scale of a run.
type size struct {
	name string
	// levels are the intake concurrency levels, tried in order until throughput stops growing.
	levels []int
	// phase is the length of one intake measurement (API or pgbench, one level).
	phase time.Duration
	// fixedRate is the length of the intake's fixed-rate phase (API, then pgbench). It is
	// longer than a phase: the checkpointer's sync (every 5 minutes; about 100 ms here)
	// stalls every commit, and in a 10 s window one such stall alone made up the 1% tail.
	fixedRate time.Duration
	// fixedRateWarmUp is how long each load of the fixed-rate phase runs at its rate before
	// it is measured, in whole seconds (pgbench's -T): in the step from idle to 1,000
	// orders/s the first second's p99 was 387 ms for the API and 515 ms for pgbench, and 39 ms
	// by the fourth, and the target is for a steady rate.
	fixedRateWarmUp time.Duration
	// rate, when set, is the intake's fixed rate: the closed loops do not run.
	rate float64
	// probeDisk runs the disk probe (diskProbe) during the intake's fixed-rate loads. Its
	// own syncs load the disk that the commits wait for, so it is off unless asked for.
	probeDisk bool
	// history is the number of old orders loaded before measuring intake.
	history int
	// orders is the number of orders of the event pipeline.
	orders int
	// paymentDelay is the simulated payment time of the pipeline.
	paymentDelay time.Duration
	// outboxRate and outboxFor set the outbox latency load.
	outboxRate int
	outboxFor  time.Duration
	// stale is the number of stale orders the expiry sweep expires.
	stale int
}

var sizes = map[string]size{
	"tiny": {
		name: "tiny", levels: []int{1, 4}, phase: 2 * time.Second, fixedRate: 2 * time.Second, fixedRateWarmUp: time.Second, history: 2_000,
		orders: 200, paymentDelay: time.Second,
		outboxRate: 200, outboxFor: 2 * time.Second,
		stale: 1_000,
	},
	"full": {
		name: "full", levels: []int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096},
		phase: 10 * time.Second, fixedRate: 30 * time.Second, fixedRateWarmUp: 5 * time.Second, history: 100_000,
		orders: 10_000, paymentDelay: 5 * time.Second,
		outboxRate: 1_000, outboxFor: 20 * time.Second,
		stale: 100_000,
	},
}

// Result is what one benchmark measured, written as bench-results/<name>.json.
type Result struct {
	Name    string    `json:"name"`
	Size    string    `json:"size"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	CPUs    int       `json:"cpus"`
	// Setup says how the benchmark ran (processes, configuration, fixture).
	Setup []string `json:"setup"`
	// Tables are the measurements, as printed.
	Tables []Table `json:"tables"`
	// Targets compare figures with the targets of issue 8.
	Targets []Target `json:"targets"`
	// Error is set when the benchmark's work failed.
	Error string `json:"error,omitempty"`
}

// Table is a printed table; rows are strings as printed, Data the same figures as numbers.
type Table struct {
	Title  string           `json:"title"`
	Header []string         `json:"header"`
	Rows   [][]string       `json:"rows"`
	Data   []map[string]any `json:"data,omitempty"`
}

// Target is one target and the figure measured for it.
type Target struct {
	What     string  `json:"what"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Limit    float64 `json:"limit"`
	// AtLeast is true when the figure must reach Limit, false when it must stay below.
	AtLeast bool `json:"atLeast"`
	Met     bool `json:"met"`
}

// MarshalJSON writes a measured figure of NaN (nothing measured) as null, which
// encoding/json would refuse to write.
func (t Target) MarshalJSON() ([]byte, error) {
	type plain Target // without this method
	return json.Marshal(struct {
		plain
		Measured *float64 `json:"measured"`
	}{plain(t), orNull(t.Measured)})
}

func newResult() *Result { return &Result{CPUs: numCPU()} }

func (r *Result) setup(format string, args ...any) {
	r.Setup = append(r.Setup, fmt.Sprintf(format, args...))
}

func (r *Result) target(what string, measured float64, unit string, limit float64, atLeast bool) {
	met := measured <= limit
	if atLeast {
		met = measured >= limit
	}
	if math.IsNaN(measured) {
		met = false
	}
	r.Targets = append(r.Targets, Target{What: what, Measured: measured, Unit: unit, Limit: limit, AtLeast: atLeast, Met: met})
}

func (r *Result) print(w io.Writer) {
	for _, s := range r.Setup {
		fmt.Fprintf(w, "  %s\n", s)
	}
	for _, t := range r.Tables {
		fmt.Fprintf(w, "\n  %s\n", t.Title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "\t%s\t\n", strings.Join(t.Header, "\t"))
		for _, row := range t.Rows {
			fmt.Fprintf(tw, "\t%s\t\n", strings.Join(row, "\t"))
		}
		tw.Flush()
	}
	if len(r.Targets) > 0 {
		fmt.Fprintf(w, "\n  targets\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range r.Targets {
			op := "<="
			if t.AtLeast {
				op = ">="
			}
			verdict := "met"
			if !t.Met {
				verdict = "MISSED"
			}
			fmt.Fprintf(tw, "  %s\t%s %s\t%s %s\t%s\n", t.What, num(t.Measured), t.Unit, op, num(t.Limit), verdict)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "  (%.1f s)\n", r.Seconds)
}

func (r *Result) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	path := filepath.Join(dir, r.Name+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// num formats a figure with a precision that suits its size.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencies collects request durations.
type latencies []time.Duration

// quantile returns the q-quantile (0..1) by the nearest-rank method; NaN when empty.
func (l latencies) quantile(q float64) float64 {
	if len(l) == 0 {
		return math.NaN()
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return ms(s[nearestRank(len(s), q)])
}

// nearestRank is the index of the q-quantile (0..1) among n sorted figures, by the
// nearest-rank method.
func nearestRank(n int, q float64) int {
	i := int(math.Ceil(q*float64(n))) - 1
	return max(0, min(i, n-1))
}

func numCPU() int { return runtime.NumCPU() }
