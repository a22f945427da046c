package cronjob

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// outcome is one run as the scheduler reported it.
type outcome struct {
	res Result
	err error
	at  time.Time
}

// watch makes s report every run on the returned channel.
func watch(s *Scheduler) <-chan outcome {
	ch := make(chan outcome, 100)
	s.onRun = func(res Result, err error) { ch <- outcome{res, err, time.Now()} }
	return ch
}

// start starts s and stops it when the test ends, however it ends.
func start(t *testing.T, s *Scheduler) {
	t.Helper()
	s.Start()
	t.Cleanup(func() { stop(t, s) })
}

func next(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(15 * time.Second):
		t.Fatal("no run within 15s")
		return outcome{}
	}
}

func stop(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSchedulerRunsAtStartUpAndStopsPromptly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stale := e.orders(t, 5, "processing", time.Hour, e.user(t), e.products(t, 2, 0))
	var logs testutil.Buffer
	// With an hour's interval, only the run at start-up can happen during the test.
	s := NewScheduler(NewSweeper(e.pool, ordersConfig(time.Minute, 500)), time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	runs := watch(s)
	start(t, s)

	o := next(t, runs)
	if o.err != nil || o.res.Expired != len(stale) {
		t.Fatalf("first run: %+v, %v; want %d expired", o.res, o.err, len(stale))
	}
	if got := logs.String(); !strings.Contains(got, `msg="expiry sweep finished" expired=5 batches=1 skipped=0 duration=`) {
		t.Errorf("log %q lacks the run's summary line", got)
	}

	// Stopping while the loop waits for the next tick returns at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("stop while idle: %v", err)
	}
	if n := strings.Count(logs.String(), "expiry sweep"); n != 1 {
		t.Errorf("%d log lines about runs, want 1:\n%s", n, logs.String())
	}
}

func TestSchedulerRunsEveryInterval(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user, products := e.user(t), e.products(t, 2, 0)
	first := e.orders(t, 4, "processing", time.Hour, user, products)
	const interval = 300 * time.Millisecond
	s := NewScheduler(NewSweeper(e.pool, ordersConfig(time.Minute, 500)), interval, slog.New(slog.DiscardHandler))
	runs := watch(s)
	start(t, s)

	prev := next(t, runs)
	if prev.err != nil || prev.res.Expired != len(first) {
		t.Fatalf("run at start-up: %+v, %v; want %d expired", prev.res, prev.err, len(first))
	}
	later := e.orders(t, 3, "processing", time.Hour, user, products)
	for {
		o := next(t, runs)
		if o.err != nil {
			t.Fatal(o.err)
		}
		// Run k+1 starts no earlier than run k started plus the interval.
		if gap := o.at.Sub(prev.at); gap < interval-prev.res.Duration {
			t.Errorf("runs %s apart, want at least the interval %s less the run's %s", gap, interval, prev.res.Duration)
		}
		prev = o
		if o.res.Expired == len(later) {
			break
		}
		if o.res.Expired != 0 {
			t.Fatalf("a later run expired %d, want 0 or %d", o.res.Expired, len(later))
		}
	}
	if got := e.statuses(t, later); got["expired"] != len(later) {
		t.Errorf("later orders: %v", got)
	}
}

func TestSchedulerRetriesAfterAFailedRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stale := e.orders(t, 6, "processing", time.Hour, e.user(t), e.products(t, 2, 0))
	// Without its order lines the sweep cannot release stock, so every run fails whole.
	e.exec(t, `ALTER TABLE order_items RENAME TO order_items_away`)
	var logs testutil.Buffer
	s := NewScheduler(NewSweeper(e.pool, ordersConfig(time.Minute, 500)), 100*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	runs := watch(s)
	start(t, s)

	o := next(t, runs)
	if o.err == nil || !strings.Contains(o.err.Error(), "order_items") {
		t.Fatalf("run without order_items: %+v, %v; want an error naming the table", o.res, o.err)
	}
	if got := logs.String(); !strings.Contains(got, `level=ERROR msg="expiry sweep failed; the next run retries" expired=0 batches=0`) ||
		!strings.Contains(got, `relation \"order_items\" does not exist`) {
		t.Errorf("log %q lacks the failure line", got)
	}
	if got := e.statuses(t, stale); got["processing"] != len(stale) {
		t.Errorf("after the failed run: %v, want all processing", got)
	}

	e.exec(t, `ALTER TABLE order_items_away RENAME TO order_items`)
	for attempt := 0; ; attempt++ {
		if attempt == 50 {
			t.Fatal("no successful run after 50 attempts")
		}
		o := next(t, runs)
		if o.err == nil {
			if o.res.Expired != len(stale) {
				t.Errorf("first good run expired %d, want %d", o.res.Expired, len(stale))
			}
			break
		}
	}
}

func TestSchedulerStopCancelsABlockedRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	products := e.products(t, 1, 0)
	stale := e.orders(t, 3, "processing", time.Hour, e.user(t), products)

	// Another transaction holds the product, so the sweep's batch waits for its lock.
	holder := e.holdProduct(t, products[0])
	var logs testutil.Buffer
	s := NewScheduler(NewSweeper(testenv.Pool(t, e.cfg), ordersConfig(time.Minute, 500)), time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	runs := watch(s)
	start(t, s)
	deadline := time.Now().Add(15 * time.Second)
	for e.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweep never waited for the product lock")
		}
		time.Sleep(20 * time.Millisecond)
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		t.Fatalf("stop during a blocked run: %v", err)
	}
	select {
	case o := <-runs:
		t.Errorf("an interrupted run was reported as finished: %+v, %v", o.res, o.err)
	default:
	}
	if !strings.Contains(logs.String(), "expiry sweep interrupted by shutdown") {
		t.Errorf("log %q lacks the interruption line", logs.String())
	}
	// Stop returns once the client gave up the statement; the server ends it when the
	// cancel request arrives. Release the lock only then, or the statement could still
	// go through (as a whole batch, which would be correct, but not what is tested here).
	deadline = time.Now().Add(15 * time.Second)
	for e.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the interrupted sweep still waits for the product lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := e.statuses(t, stale); got["processing"] != len(stale) {
		t.Errorf("after the interrupted run: %v, want all processing (the batch rolled back)", got)
	}
}

// slowRunner's runs take the durations in took, in turn, and it records how they overlap.
type slowRunner struct {
	mu       sync.Mutex
	took     []time.Duration
	inFlight int
	overlap  bool
	spans    [][2]time.Time
}

func (r *slowRunner) Run(ctx context.Context) (Result, error) {
	r.mu.Lock()
	r.inFlight++
	r.overlap = r.overlap || r.inFlight > 1
	start := time.Now()
	took := r.took[min(len(r.spans), len(r.took)-1)]
	r.mu.Unlock()
	select {
	case <-time.After(took):
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	r.spans = append(r.spans, [2]time.Time{start, time.Now()})
	return Result{Duration: time.Since(start)}, ctx.Err()
}

func TestSchedulerNeverOverlapsRunsAndDropsMissedTicks(t *testing.T) {
	t.Parallel()
	const interval = 50 * time.Millisecond
	// The first run lasts eight intervals, the others a moment.
	r := &slowRunner{took: []time.Duration{8 * interval, time.Millisecond}}
	s := newScheduler(r, interval, slog.New(slog.DiscardHandler))
	runs := watch(s)
	start(t, s)
	for range 4 {
		if o := next(t, runs); o.err != nil {
			t.Fatal(o.err)
		}
	}
	stop(t, s)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.overlap {
		t.Error("two runs were in flight at once")
	}
	for i := 1; i < len(r.spans); i++ {
		if r.spans[i][0].Before(r.spans[i-1][1]) {
			t.Errorf("run %d started at %s, before run %d ended at %s", i, r.spans[i][0], i-1, r.spans[i-1][1])
		}
	}
	// The second run follows the long first one at once; the ticks it missed are dropped,
	// not made up for, so the runs after it keep to the interval. A made-up tick would start
	// a run at once; half the interval leaves room for a run that started late.
	for i := 2; i < len(r.spans); i++ {
		if gap := r.spans[i][0].Sub(r.spans[i-1][0]); gap < interval/2 {
			t.Errorf("run %d started %s after run %d, less than the interval %s", i, gap, i-1, interval)
		}
	}
}

// blockedRunner's run has expired n orders when it blocks until the scheduler stops.
type blockedRunner struct {
	n       int
	started chan struct{}
}

func (r blockedRunner) Run(ctx context.Context) (Result, error) {
	close(r.started)
	<-ctx.Done()
	return Result{Expired: r.n}, ctx.Err()
}

// TestSchedulerCountsARunCutShortByStopping: the orders that a run interrupted by shutdown
// had already expired (its committed batches) are counted. Not parallel: it reads the
// package's counter.
func TestSchedulerCountsARunCutShortByStopping(t *testing.T) {
	before := promtestutil.ToFloat64(expired)
	r := blockedRunner{n: 7, started: make(chan struct{})}
	s := newScheduler(r, time.Hour, slog.New(slog.DiscardHandler))
	s.Start()
	<-r.started
	stop(t, s)
	if got := promtestutil.ToFloat64(expired) - before; got != 7 {
		t.Errorf("expired orders counted %v, want the interrupted run's 7", got)
	}
}

// TestSchedulerRunOnASilentDatabaseFails: when the database stops answering (a host that went
// away without closing its connections, a failover), the run does not wait for TCP to give
// up, which takes up to a quarter of an hour: its batch fails after its timeout, the failure
// is logged, and the following runs keep trying.
func TestSchedulerRunOnASilentDatabaseFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	user, products := e.user(t), e.products(t, 2, 0)
	proxy := testutil.StartProxy(t, net.JoinHostPort(e.cfg.Host, strconv.Itoa(e.cfg.Port)))
	viaProxy := e.cfg
	viaProxy.Host, viaProxy.Port = "127.0.0.1", proxy.Port()
	var logs testutil.Buffer
	const interval = 500 * time.Millisecond
	sweeper := NewSweeper(testenv.Pool(t, viaProxy), ordersConfig(time.Minute, 500))
	sweeper.batchTimeout = 2 * time.Second // a minute at least outside tests
	s := NewScheduler(sweeper, interval, slog.New(slog.NewTextHandler(&logs, nil)))
	// The database goes silent as the first run reports, in the scheduler's goroutine, before
	// the next run is due: however slow the machine, the runs after the first meet it silent.
	runs := make(chan outcome, 100)
	var partition sync.Once
	s.onRun = func(res Result, err error) {
		partition.Do(proxy.Silence)
		runs <- outcome{res, err, time.Now()}
	}
	start(t, s)
	if o := next(t, runs); o.err != nil {
		t.Fatalf("run before the partition: %v", o.err)
	}

	stale := e.orders(t, 3, "processing", time.Hour, user, products)
	select {
	case o := <-runs:
		if o.err == nil || !strings.Contains(o.err.Error(), "no answer from the database within 2s") {
			t.Fatalf("run during the partition: %+v, %v; want a failure saying the database did not answer", o.res, o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no run reported within 10s of the database going silent; log:\n%s", logs.String())
	}
	if got := logs.String(); !strings.Contains(got, `msg="expiry sweep failed; the next run retries"`) {
		t.Errorf("log %q lacks the failure line", got)
	}
	if o := next(t, runs); o.err == nil {
		t.Errorf("the run after the failed one: %+v, want it to try again and fail", o.res)
	}
	if got := e.statuses(t, stale); got["processing"] != len(stale) {
		t.Errorf("orders %v, want all processing: the database never got the statement", got)
	}
}
