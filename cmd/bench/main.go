// Command bench measures orderflow against its performance targets, each benchmark side by
// side with a reference for the same work measured in the same run, against the local
// PostgreSQL and RabbitMQ. It builds ./cmd/orderflow from this checkout into the output
// directory (or takes the binary of -bin), runs its processes as child processes (so that
// their peak memory can be read from /proc), prints one table per benchmark and writes
// bench-results/<name>.json.
//
//	go run ./cmd/bench                      # every benchmark at full size (minutes)
//	go run ./cmd/bench -size tiny           # seconds: proves that the benchmarks work
//	go run ./cmd/bench -only intake,outbox  # some of them
//
// Every benchmark uses its own database (orderflow_bench_<timestamp>_<name>, dropped at the
// end unless -keep) and its own exchange. The figures are not asserted: the process exits
// non-zero only when the work itself failed (an error, a lost or undecided order).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"orderflow/configuration"
)

// benchmark is one named benchmark.
type benchmark struct {
	name string
	what string
	run  func(ctx context.Context, r *runner) (*Result, error)
}

var benchmarks = []benchmark{
	{"intake", "order intake: POST /api/orders against pgbench running the API's statement and the plain transaction", runIntake},
	{"pipeline", "event pipeline: orders posted until every one is decided, against the same writes in SQL", runPipeline},
	{"sweep", "expiry sweep: one cron run over stale orders, against one SQL statement", runSweep},
	{"outbox", "outbox latency: commit-to-publish delay at a steady event rate", runOutbox},
	{"memory", "memory: peak RSS of the api under intake load and of the worker with a burst of payments in flight", runMemory},
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		size    = flag.String("size", "full", "tiny (seconds, for CI) or full (minutes)")
		only    = flag.String("only", "", "comma-separated benchmarks to run (default all): "+names())
		out     = flag.String("out", "bench-results", "directory for the JSON results and process logs")
		cfgDir  = flag.String("config", envOr("ORDERFLOW_CONFIG_DIR", "./configuration"), "configuration directory")
		binary  = flag.String("bin", "", "orderflow binary to run (default: build ./cmd/orderflow into the output directory)")
		keep    = flag.Bool("keep", false, "keep the benchmark databases and exchanges")
		verbose = flag.Bool("v", false, "log progress")
		levels  = flag.String("levels", "", "intake concurrency levels, comma-separated (default: the size's)")
		phase   = flag.Duration("phase", 0, "length of one intake phase (default: the size's)")
		rate    = flag.Float64("rate", 0, "intake: post at this many orders/s (and pgbench at the same rate) without the closed loops (default: half the closed loops' peak)")
		fixed   = flag.Duration("fixed", 0, "length of the intake's fixed-rate phase (default: the size's)")
		probe   = flag.Bool("probe-disk", false, "intake: sync a file on the WAL's file system every 20ms during the fixed-rate loads, and count the slow seconds that met a slow sync (its syncs load that disk too)")
		set     = overrides{}
	)
	flag.Var(set, "set", "ORDERFLOW_KEY=value for every process started (repeatable), to measure a setting")
	flag.Parse()
	sz, ok := sizes[*size]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: -size must be tiny or full, not %q\n", *size)
		return 2
	}
	if *levels != "" {
		sz.levels = nil
		for _, l := range strings.Split(*levels, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(l))
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "bench: -levels: %q is not a positive number\n", l)
				return 2
			}
			sz.levels = append(sz.levels, n)
		}
	}
	if *phase > 0 {
		sz.phase = *phase
	}
	if *fixed > 0 {
		sz.fixedRate = *fixed
	}
	if *rate < 0 {
		fmt.Fprintf(os.Stderr, "bench: -rate must not be negative\n")
		return 2
	}
	sz.rate, sz.probeDisk = *rate, *probe
	selected, err := selectBenchmarks(*only)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	level := slog.LevelInfo
	if !*verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The benchmark's own view of the configuration is the processes': files, environment,
	// then -set.
	cfg, err := configuration.LoadWithEnv(*cfgDir, func(k string) (string, bool) {
		if v, ok := set[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	cfgAbs, err := filepath.Abs(*cfgDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	r := &runner{
		size:   sz,
		cfg:    cfg,
		cfgDir: cfgAbs,
		out:    *out,
		keep:   *keep,
		log:    logger,
		stamp:  time.Now().UTC().Format("20060102_150405"),
		binary: *binary,
		set:    set,
	}
	if r.binary == "" {
		fmt.Printf("building ./cmd/orderflow ...\n")
		if r.binary, err = buildBinary(ctx, *out); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
	}
	fmt.Printf("orderflow benchmarks, size %s, %d CPUs; figures on a shared machine are noisy, ratios much less\n",
		sz.name, numCPU())
	if len(set) > 0 {
		fmt.Printf("every process started with %v\n", set)
	}
	fmt.Println()

	failed := 0
	for _, b := range selected {
		fmt.Printf("== %s: %s\n", b.name, b.what)
		start := time.Now()
		res, err := b.run(ctx, r)
		if res != nil {
			res.Name, res.Size, res.Started, res.Seconds = b.name, sz.name, start.UTC(), time.Since(start).Seconds()
			if err != nil {
				res.Error = err.Error()
			}
			res.print(os.Stdout)
			if werr := res.write(*out); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		if err != nil {
			failed++
			fmt.Printf("FAILED: %s: %v\n", b.name, err)
		}
		fmt.Println()
		if ctx.Err() != nil {
			break
		}
	}
	if failed > 0 {
		fmt.Printf("%d benchmark(s) failed\n", failed)
		return 1
	}
	return 0
}

// overrides are -set KEY=value flags.
type overrides map[string]string

func (o overrides) String() string { return fmt.Sprint(map[string]string(o)) }

func (o overrides) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || !strings.HasPrefix(k, "ORDERFLOW_") {
		return fmt.Errorf("want ORDERFLOW_KEY=value, got %q", kv)
	}
	o[k] = v
	return nil
}

func names() string {
	var n []string
	for _, b := range benchmarks {
		n = append(n, b.name)
	}
	return strings.Join(n, ", ")
}

func selectBenchmarks(only string) ([]benchmark, error) {
	if only == "" {
		return benchmarks, nil
	}
	var out []benchmark
	for _, name := range strings.Split(only, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(benchmarks, func(b benchmark) bool { return b.name == name })
		if i < 0 {
			return nil, fmt.Errorf("-only: unknown benchmark %q (known: %s)", name, names())
		}
		out = append(out, benchmarks[i])
	}
	return out, nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
