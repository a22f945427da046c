package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"orderflow/api"
	"orderflow/domain"
	"orderflow/events"
	"orderflow/platform/bus"
)

// plainScript is the same order written statement by statement, as a transaction of the
// parts the intake is made of: the outbox row, two conditional stock updates (in product id
// order, as the API locks them), the order and its two items. It is the second reference:
// what the API's one statement saves.
const plainScript = `\set uid random(:ufirst, :ufirst + :users - 1)
\set a random(0, :products - 1)
\set b (:a + random(1, :products - 1)) % :products
\set p1 :pfirst + least(:a, :b)
\set p2 :pfirst + greatest(:a, :b)
BEGIN;
INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload, headers) VALUES (now(), gen_random_uuid(), 'orderflow.order.created.v1', 'order.created', '{"specversion":"1.0","id":"0193a5b2-7c1e-7d3a-9f00-5b1f3c2d4e6f","source":"orderflow/api","type":"orderflow.order.created.v1","time":"2026-12-01T03:00:00.123456Z","datacontenttype":"application/json","data":{"orderId":1,"userId":1,"total":"20.00","items":[{"productId":1,"quantity":1,"price":"10.00"},{"productId":2,"quantity":1,"price":"10.00"}],"createdAt":"2026-12-01T03:00:00.123456Z"}}'::jsonb, '{"actor-user-id":"1","x-request-id":"0123456789abcdef0123456789abcdef","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}'::jsonb);
UPDATE products SET stock = stock - 1, updated_at = now() WHERE id = :p1 AND stock >= 1;
UPDATE products SET stock = stock - 1, updated_at = now() WHERE id = :p2 AND stock >= 1;
INSERT INTO orders (user_id, total, status, created_at, updated_at) VALUES (:uid, 20.00, 'pending', now(), now());
INSERT INTO order_items (order_id, product_id, quantity, price) VALUES (currval(pg_get_serial_sequence('orders', 'id')), :p1, 1, 10.00);
INSERT INTO order_items (order_id, product_id, quantity, price) VALUES (currval(pg_get_serial_sequence('orders', 'id')), :p2, 1, 10.00);
END;
`

// pgbenchScript is the API's transaction for one order as a pgbench script: the products'
// locks (api.LockProducts) and the order statement (api.OrderStatement) in one pipeline, as
// the api sends them, for 2 random products x 1 (in product id order, as the API sends them)
// placed by a random customer, with an OrderCreated envelope and headers of the API's size.
func pgbenchScript() (string, error) {
	at := time.Date(2026, 12, 1, 3, 0, 0, 123456789, time.UTC)
	env, err := events.NewEnvelopeWithoutData("0193a5b2-7c1e-7d3a-9f00-5b1f3c2d4e6f", events.SourceAPI, events.TypeOrderCreated, at)
	if err != nil {
		return "", err
	}
	envelope, err := env.Encode()
	if err != nil {
		return "", err
	}
	const headers = `{"actor-user-id":"1","x-request-id":"0123456789abcdef0123456789abcdef",` +
		`"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`
	params := []string{
		":uid",                               // $1 caller
		":uid",                               // $2 user
		"ARRAY[:p1, :p2]::bigint[]",          // $3 products
		"'{1,1}'",                            // $4 quantities
		"now()",                              // $5
		"'" + domain.MaxMoney.String() + "'", // $6 largest total
		"gen_random_uuid()",                  // $7 event id
		"'" + events.TypeOrderCreated + "'",
		"'" + events.RoutingKeyOrderCreated + "'",
		"'" + string(envelope) + "'",
		"'" + headers + "'",
		"'" + at.Format(time.RFC3339Nano) + "'", // $12 createdAt
		"'" + domain.RoleAdmin + "'",            // $13
		"0",                                     // $14 caller's token version
	}
	stmt := api.OrderStatement
	for n := len(params); n >= 1; n-- { // $14 before $1
		stmt = strings.ReplaceAll(stmt, "$"+strconv.Itoa(n), params[n-1])
	}
	lock := strings.ReplaceAll(api.LockProducts, "$1", "ARRAY[:p1, :p2]::bigint[]")
	return `\set uid random(:ufirst, :ufirst + :users - 1)
\set a random(0, :products - 1)
\set b (:a + random(1, :products - 1)) % :products
\set p1 :pfirst + least(:a, :b)
\set p2 :pfirst + greatest(:a, :b)
\startpipeline
` + lock + ";\n" + strings.Join(strings.Fields(stmt), " ") + ";\n\\endpipeline\n", nil
}

// checkReference warms pgbench's database up with the API's statement and checks that every
// transaction pgbench counted stored an order: the statement stores nothing, without an
// error, when one of its checks fails, and pgbench would count that as done.
func checkReference(ctx context.Context, e *env, refDB, script string, cat catalogue, d time.Duration) error {
	pool, err := e.openDB(ctx, refDB, 1)
	if err != nil {
		return err
	}
	defer pool.Close()
	count := func() (n int, err error) {
		err = pool.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&n)
		return n, err
	}
	before, err := count()
	if err != nil {
		return err
	}
	p, err := pgbench(ctx, refDB, script, cat, 4, d)
	if err != nil {
		return err
	}
	after, err := count()
	if err != nil {
		return err
	}
	if after-before != p.Done || p.Done == 0 {
		return fmt.Errorf("pgbench ran the API's statement %d times but stored %d orders", p.Done, after-before)
	}
	return nil
}

// runIntake measures POST /api/orders at rising concurrency, each level side by side with
// pgbench on an identical database running the API's own statement (the target's reference)
// and the same order as a plain transaction, then a fixed-rate phase at half the API's peak
// next to pgbench at the same rate. The worker does not run: intake is the API's work (the outbox
// relay runs inside the API process and publishes every order's event). With -rate, only the
// fixed-rate phase runs, at that rate.
func runIntake(ctx context.Context, r *runner) (res *Result, err error) {
	res = newResult()
	// On Debian, postgresql-client installs only a wrapper named pgbench, which fails unless
	// a server package (postgresql-15, say) brought the program itself.
	if out, err := exec.CommandContext(ctx, "pgbench", "--version").CombinedOutput(); err != nil {
		return res, fmt.Errorf("the reference needs pgbench (Debian: apt-get install postgresql): %w: %s", err, bytes.TrimSpace(out))
	}
	// The benchmark process is only the load generator here, and it shares the machine with
	// what it measures: one scheduler thread passes each request between its goroutines
	// without waking another thread.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e, err := r.newEnv(ctx, "intake")
	if err != nil {
		return res, err
	}
	defer e.close()
	cat, err := e.fixture(ctx, r.size.history)
	if err != nil {
		return res, err
	}
	refDB, err := e.copyDB(ctx, "pgbench")
	if err != nil {
		return res, err
	}
	script := filepath.Join(os.TempDir(), "orderflow-bench-intake-"+r.stamp+".sql")
	plain := filepath.Join(os.TempDir(), "orderflow-bench-intake-plain-"+r.stamp+".sql")
	text, err := pgbenchScript()
	if err != nil {
		return res, fmt.Errorf("pgbench script: %w", err)
	}
	for file, text := range map[string]string{script: text, plain: plainScript} {
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			return res, err
		}
		defer os.Remove(file)
	}

	api, client, err := e.startAPI(ctx, nil)
	if err != nil {
		return res, err
	}
	stopDrain, err := e.drain(bus.ConsumerOrderCreated)
	if err != nil {
		return res, err
	}
	defer stopDrain()
	res.setup("api process (bin/orderflow api, configuration defaults: http.maxRequestsInFlight %d, runtime.memoryLimitMiB %d, database.maxConns %d, orders.intakeConnections %d, orders.intakeGroupSize %d, outbox.batchSize %d, log.level %s); worker not running",
		e.cfg.HTTP.MaxRequestsInFlight, e.cfg.Runtime.MemoryLimitMiB, e.cfg.Database.MaxConns, e.cfg.Orders.IntakeConnections, e.cfg.Orders.IntakeGroupSize, e.cfg.Outbox.BatchSize, e.cfg.Log.Level)
	res.setup("the benchmark process takes the events from the worker's %s queue and drops them (auto-ack), as a running worker keeps that queue short; its CPU counts in the load generator's", bus.ConsumerOrderCreated)
	res.setup("fixture: %d products, %d customers, %d old orders with 2 items each, VACUUM ANALYZE; pgbench on a copy of the same database",
		cat.products, cat.users, r.size.history)
	res.setup("each order: 2 random products x 1, random customer, posted by the administrator")
	res.setup("pgbench runs the API's transaction for one order, api.LockProducts and api.OrderStatement in one pipeline, one order per transaction; the api stores the orders that wait together in one transaction (up to orders.intakeGroupSize, with api.GroupStatement when every one of them can be placed), so under load it commits less often per order than pgbench")
	var autovacuum string
	if err := e.pool.QueryRowContext(ctx, `SHOW autovacuum`).Scan(&autovacuum); err != nil {
		return res, fmt.Errorf("read autovacuum: %w", err)
	}
	res.setup("this server's autovacuum is %s: the benchmark runs VACUUM between its phases, as autovacuum would within a minute (every order updates two products' stock and its event's outbox row)", autovacuum)

	in := &intakeRun{
		r: r, e: e, res: res, cat: cat, refDB: refDB, script: script, plain: plain, api: api, apiPid: api.cmd.Process.Pid,
		post: func(ctx context.Context, rng *rand.Rand) error { return client.create(ctx, cat.orderBody(rng)) },
	}
	// Warm up the API (connections, JIT-free plans, token cache) and pgbench's database.
	warm := closedLoop(ctx, 4, r.size.phase/4, in.post)
	in.posted += warm.Done
	if warm.Errors > 0 {
		return res, fmt.Errorf("warm-up: %d failed orders, first: %s", warm.Errors, warm.FirstError)
	}
	if err := checkReference(ctx, e, refDB, script, cat, r.size.phase/4); err != nil {
		return res, err
	}

	rate := r.size.rate
	if rate == 0 {
		apiPeak, pgPeak, err := in.ladder(ctx)
		if err != nil {
			return res, err
		}
		rate = apiPeak.Throughput / 2
		res.target(fmt.Sprintf("api peak (%d clients) / pgbench peak with the API's statement (%d clients)", apiPeak.Clients, pgPeak.Clients),
			100*apiPeak.Throughput/pgPeak.Throughput, "%", 70, true)
	}
	fr, err := in.fixedRate(ctx, rate)
	if err != nil {
		return res, err
	}
	if r.size.rate == 0 {
		res.target(fmt.Sprintf("p99 at half the peak (%.0f orders/s)", rate), fr.P99, "ms", 25, false)
	}

	rss, err := api.peakRSS()
	if err != nil {
		return res, err
	}
	var stored int
	if err := e.pool.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE status = 'pending'`).Scan(&stored); err != nil {
		return res, fmt.Errorf("count orders: %w", err)
	}
	res.Tables = append(res.Tables, Table{
		Title:  "api process",
		Header: []string{"peak RSS MiB", "orders posted (incl. warm-up)", "pending orders stored"},
		Rows:   [][]string{{num(rss), strconv.Itoa(in.posted), strconv.Itoa(stored)}},
		Data:   []map[string]any{{"peakRSSMiB": rss, "ordersPosted": in.posted, "ordersStored": stored}},
	})
	res.target("api peak RSS under intake load (150 MB)", rss, "MiB", 150*mibPerMB, false)
	if stored < in.posted {
		return res, fmt.Errorf("%d orders answered 201 but only %d stored", in.posted, stored)
	}
	return res, nil
}

// intakeRun is one run of the intake benchmark: the api process, pgbench's database and
// scripts, and what was posted so far.
type intakeRun struct {
	r             *runner
	e             *env
	res           *Result
	cat           catalogue
	refDB         string
	script, plain string // pgbench scripts: the API's statement, the plain transaction
	api           *process
	apiPid        int
	post          call
	posted        int // orders the API answered with 201
	// relayLeft is the longest the api's relay took, after an API turn of the closed loops,
	// to publish what the turn left.
	relayLeft time.Duration
}

// measure runs one phase and records the CPU the machine spent on it.
func (in *intakeRun) measure(run func() (phase, error)) (phase, error) {
	before := readCPU(in.apiPid)
	p, err := run()
	p.cpu = readCPU(in.apiPid).sub(before)
	return p, err
}

// level runs one level of the closed loops with clients: after VACUUM, the API, pgbench with
// the API's statement and pgbench with the plain transaction take two turns of half a phase,
// the second round in reverse order, so that a change in the machine's speed (other work on
// the host) weighs on all three alike. pgbench runs only while refs; it returns the merged
// phases, and whether pgbench still runs (it stops when the server refuses its
// connections; its phases are then zero).
func (in *intakeRun) level(ctx context.Context, clients int, refs bool) (a, pg, pl phase, stillRefs bool, err error) {
	r := in.r
	if _, err := vacuum(ctx, in.e, in.e.dbName, in.refDB); err != nil {
		return a, pg, pl, refs, err
	}
	var as, pgs, plains []phase
	for round := range 2 {
		turns := []string{"api", "pgbench", "plain"}
		if round == 1 {
			slices.Reverse(turns)
		}
		for _, turn := range turns {
			if turn == "api" {
				var left time.Duration
				p, err := in.measure(func() (phase, error) {
					p, l, err := apiTurn(ctx, in.e.pool, func() phase { return closedLoop(ctx, clients, r.size.phase/2, in.post) })
					left = l
					return p, err
				})
				in.posted += p.Done
				if err != nil {
					return a, pg, pl, refs, err
				}
				if p.Errors > 0 {
					return a, pg, pl, refs, fmt.Errorf("%d clients: %d failed orders, first: %s", clients, p.Errors, p.FirstError)
				}
				in.relayLeft = max(in.relayLeft, left)
				as = append(as, p)
				continue
			}
			if !refs {
				continue
			}
			file := in.script
			if turn == "plain" {
				file = in.plain
			}
			p, err := in.measure(func() (phase, error) { return pgbench(ctx, in.refDB, file, in.cat, clients, r.size.phase/2) })
			if errors.Is(err, errTooManyClients) {
				in.res.setup("pgbench stopped before %d clients: %v; the API rises alone from there", clients, err)
				refs = false
				continue
			}
			if err != nil {
				return a, pg, pl, refs, err
			}
			if turn == "plain" {
				plains = append(plains, p)
			} else {
				pgs = append(pgs, p)
			}
		}
	}
	if refs {
		pg, pl = merge(pgs), merge(plains)
	}
	return merge(as), pg, pl, refs, nil
}

// apiTurn runs load, one API turn of a level, and then waits until the api's relay has
// published the events the turn left (at the peak it falls behind the orders), and returns
// how long that took: otherwise its publishing would load the reference's turn that follows,
// and its CPU would be charged there. The throughput is the load's alone.
func apiTurn(ctx context.Context, pool *sql.DB, load func() phase) (p phase, left time.Duration, err error) {
	p = load()
	left, err = drainOutbox(ctx, pool, time.Minute)
	return p, left, err
}

// ladder runs the closed loops at rising concurrency until neither the API nor pgbench
// grows, and returns the peaks of the API and of pgbench with the API's statement.
func (in *intakeRun) ladder(ctx context.Context) (apiPeak, pgPeak phase, err error) {
	r, res := in.r, in.res
	res.setup("per level the API, pgbench with the API's statement and pgbench with the plain transaction take turns twice, %s each; each level starts with VACUUM of the API's database and pgbench's", r.size.phase/2)
	res.setup("pgbench reports no percentiles: its p50Ms in the JSON is its average latency")
	res.setup("CPU per order: busy time of every core (/proc/stat) during the phase, divided by the orders; of it, the api process, the load generator (this process, or pgbench's client), PostgreSQL's and RabbitMQ's processes (with their ended backends); /proc counts in 10 ms ticks, so rest, the difference, may read slightly negative")
	t := Table{Title: "closed loop: clients posting back to back",
		Header: []string{"clients", "api orders/s", "p50 ms", "p99 ms", "api peak RSS MiB", "pgbench tx/s", "avg ms", "api/pgbench",
			"plain tx/s", "avg ms", "api/plain"}}
	cpuTable := Table{Title: "CPU time per order, ms (2 cores: 1,000 orders/s at 2 ms each is the whole machine)",
		Header: []string{"clients", "api: machine", "api process", "load generator", "PostgreSQL", "RabbitMQ", "rest",
			"pgbench: machine", "PostgreSQL", "plain: machine", "PostgreSQL"}}
	var (
		plainPeak phase
		flat      int
	)
	// refs is whether pgbench still runs beside the API: it stops at the first level whose
	// connections the server refuses, and the API rises alone from there, since its own
	// connections to PostgreSQL do not grow with its clients.
	refs := true
	for _, c := range r.size.levels {
		var a, pg, pl phase
		a, pg, pl, refs, err = in.level(ctx, c, refs)
		if err != nil {
			return apiPeak, pgPeak, err
		}
		// The api's memory grows with its connections: its peak so far, read after each level.
		rss, err := in.api.peakRSS()
		if err != nil {
			return apiPeak, pgPeak, err
		}
		// The API's columns, then the references' or, once pgbench has stopped, dashes.
		row := []string{strconv.Itoa(c), num(a.Throughput), num(a.P50), num(a.P99), num(rss)}
		data := map[string]any{"clients": c, "api": a, "apiPeakRSSMiB": rss}
		cpuRow := append([]string{strconv.Itoa(c)}, apiCPUCells(a.CPU)...)
		cpuData := map[string]any{"clients": c, "api": a.CPU}
		if refs {
			ratio, plainRatio := a.Throughput/pg.Throughput, a.Throughput/pl.Throughput
			row = append(row, num(pg.Throughput), num(pg.P50), fmt.Sprintf("%.0f%%", 100*ratio),
				num(pl.Throughput), num(pl.P50), fmt.Sprintf("%.0f%%", 100*plainRatio))
			data["pgbench"], data["ratio"], data["plain"], data["plainRatio"] = pg, ratio, pl, plainRatio
			cpuRow = append(append(cpuRow, refCPUCells(pg.CPU)...), refCPUCells(pl.CPU)...)
			cpuData["pgbench"], cpuData["plain"] = pg.CPU, pl.CPU
		} else {
			row = append(row, dashes(6)...)
			cpuRow = append(cpuRow, dashes(4)...)
		}
		t.Rows, t.Data = append(t.Rows, row), append(t.Data, data)
		cpuTable.Rows, cpuTable.Data = append(cpuTable.Rows, cpuRow), append(cpuTable.Data, cpuData)
		res.Tables = []Table{t, cpuTable}
		r.log.Info("intake level", "clients", c, "api", a.Throughput, "pgbench", pg.Throughput, "plain", pl.Throughput)
		grew := a.Throughput > 1.05*apiPeak.Throughput || pg.Throughput > 1.05*pgPeak.Throughput
		if a.Throughput > apiPeak.Throughput {
			apiPeak = a
		}
		if pg.Throughput > pgPeak.Throughput {
			pgPeak = pg
		}
		if pl.Throughput > plainPeak.Throughput {
			plainPeak = pl
		}
		if grew {
			flat = 0
		} else if flat++; flat == 2 {
			break // two levels in a row without growth
		}
		if ctx.Err() != nil {
			return apiPeak, pgPeak, ctx.Err()
		}
	}
	if apiPeak.Done == 0 || pgPeak.Done == 0 {
		return apiPeak, pgPeak, fmt.Errorf("no level measured")
	}
	if flat < 2 {
		res.setup("the levels ran out while the API's throughput still grew: its peak, and the half of it that the latency target is measured at, may be higher than measured here")
	}
	res.setup("after each API turn the api's relay published what the turn left before the next turn began (at most %s): the API's CPU per order includes that, its orders/s do not",
		in.relayLeft.Round(100*time.Millisecond))
	res.Tables = append(res.Tables, Table{
		Title:  "peaks",
		Header: []string{"api orders/s", "pgbench tx/s", "api/pgbench", "plain tx/s", "api/plain"},
		Rows: [][]string{{fmt.Sprintf("%s (%d clients)", num(apiPeak.Throughput), apiPeak.Clients),
			fmt.Sprintf("%s (%d)", num(pgPeak.Throughput), pgPeak.Clients), fmt.Sprintf("%.0f%%", 100*apiPeak.Throughput/pgPeak.Throughput),
			fmt.Sprintf("%s (%d)", num(plainPeak.Throughput), plainPeak.Clients), fmt.Sprintf("%.0f%%", 100*apiPeak.Throughput/plainPeak.Throughput)}},
		Data: []map[string]any{{"api": apiPeak.Throughput, "pgbench": pgPeak.Throughput, "plain": plainPeak.Throughput}},
	})
	return apiPeak, pgPeak, nil
}

// fixedRate posts orders at rate per second, then runs pgbench with the API's statement at
// the same rate, and adds their table. It returns the API's phase.
func (in *intakeRun) fixedRate(ctx context.Context, rate float64) (phase, error) {
	r, e, res := in.r, in.e, in.res
	// The fixed rate measures the API in a steady state, not its recovery from the last closed
	// loop: at its peak the api's relay falls behind the orders, and publishes the rest here.
	drained, err := drainOutbox(ctx, e.pool, time.Minute)
	if err != nil {
		return phase{}, err
	}
	res.setup("the fixed-rate phase began once the api's relay had published what the closed loops left (%s)", drained.Round(100*time.Millisecond))
	// Nor does it measure the row versions the closed loops left behind, which autovacuum
	// removes within a minute on a server that runs it.
	took, err := vacuum(ctx, e, e.dbName, in.refDB)
	if err != nil {
		return phase{}, err
	}
	res.setup("then the API's database and pgbench's were vacuumed (%s)", took.Round(100*time.Millisecond))
	res.setup("fixed rate: a second's p99 groups the calls by the second in which they were due; CPU per order as in the closed loops, and how busy that kept the machine's cores; WAL per order is what the server wrote during the phase (for the API, its relay's marks included), divided by the orders")
	// Nor the step from idle to the rate: each load runs at the rate before it is measured.
	warm := r.size.fixedRateWarmUp
	res.setup("each load ran at the rate for %s before it was measured", warm)
	// Nor a server that has not written at this rate lately: each load starts with WAL files
	// ready to reuse.
	var fileSize int64
	if err := e.pool.QueryRowContext(ctx, `SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'`).Scan(&fileSize); err != nil {
		return phase{}, fmt.Errorf("read wal_segment_size: %w", err)
	}
	need := int64(rate*(warm+r.size.fixedRate).Seconds()*walPerOrderBound)/fileSize + 1
	var ready []string
	// And, when asked, where a slow second came from a slow disk: a probe syncs a file on the
	// WAL's disk.
	var probe *diskProbe
	if r.size.probeDisk {
		probe, err = startProbeBeside(ctx, e.pool)
	}
	switch {
	case !r.size.probeDisk:
		res.setup("the disk's syncs were not probed (-probe-disk probes them, with syncs of its own that load the disk the commits wait for)")
	case err != nil:
		res.setup("the disk's syncs were not probed: %v", err)
	default:
		defer probe.close()
		res.setup("a probe wrote %d KiB to a file in %s (the WAL's file system) and synced it every %s: "+
			"a commit waits for its WAL's sync on that disk, so a sync that stalls delays every commit behind it, the API's and pgbench's alike; "+
			"each load's seconds of syncs count from the moment its first measured call was due (pgbench's own seconds begin about half a second later, once its connections are open)",
			probeBlock>>10, filepath.Dir(probe.file.Name()), probeInterval)
	}
	// And which seconds came with the kernel writing dirty pages back: a meter reads what the
	// machine wrote out in each second, and adds no load.
	wb, err := startWriteback()
	if err != nil {
		res.setup("the machine's writeback was not measured: %v", err)
	} else {
		defer wb.close()
		res.setup("writeback: the pages the machine wrote out to disk in each second (nr_written in /proc/vmstat), the WAL's syncs included; "+
			"the kernel writes dirty pages back %s, so the data files a load dirties since the checkpoint before it may go at once, "+
			"and a commit whose WAL sync comes behind them waits; a reading counts what the last %s wrote, "+
			"and pgbench's own seconds begin about half a second later than the meter's", writebackSettings(), writebackInterval)
	}
	var syncs, written *secondFigures // what the probe and the meter keep, where they run
	if probe != nil {
		syncs = &probe.syncs
	}
	if wb != nil {
		written = &wb.written
	}
	// run runs one load at the fixed rate and measures its CPU and WAL from the moment its
	// warm-up ends.
	run := func(name string, load func(measuring func()) (phase, error)) (phase, error) {
		ahead, prepared, err := prepareWAL(ctx, e.pool, need, fileSize)
		if err != nil {
			return phase{}, err
		}
		files := fmt.Sprintf("%s %d", name, ahead)
		if prepared {
			files += " (prepared)"
		}
		ready = append(ready, files)
		m := in.newMeter(ctx, syncs, written)
		p, err := load(m.start)
		if err != nil {
			return p, err
		}
		err = m.stop(&p)
		if m.probeErr != nil {
			res.setup("the disk probe stopped during the %s load: %v", name, m.probeErr)
		}
		if m.writebackErr != nil {
			res.setup("the writeback meter stopped during the %s load: %v", name, m.writebackErr)
		}
		return p, err
	}
	fr, err := run("api", func(measuring func()) (phase, error) {
		return fixedRate(ctx, rate, warm, r.size.fixedRate, 256, in.post, measuring), nil
	})
	in.posted += fr.Warm + fr.Done
	if err != nil {
		return fr, err
	}
	if fr.Errors > 0 {
		return fr, fmt.Errorf("fixed rate: %d failed orders, first: %s", fr.Errors, fr.FirstError)
	}
	// The same rate of the same transaction through pgbench shows what the database and the
	// disk alone contribute to the tail (a slow WAL flush delays every commit behind it).
	pgfr, err := run("pgbench", func(measuring func()) (phase, error) {
		return pgbenchAtRate(ctx, in.refDB, in.script, in.cat, fixedRateClients, rate, warm, r.size.fixedRate, measuring)
	})
	if err != nil {
		return fr, err
	}
	res.setup("WAL files ready ahead of the server's write position as each load began, of the %d at most that it fills (at %d KiB per order): %s; "+
		"a server that has none creates each file as it reaches it, writing %d MiB of zeros and syncing them while every commit waits, "+
		"so where fewer were ready the benchmark wrote WAL and checkpointed first (prepared); "+
		"checkpoints begun while a load was measured: api %d, pgbench %d",
		need, walPerOrderBound>>10, strings.Join(ready, ", "), fileSize>>20, *fr.Checkpoints, *pgfr.Checkpoints)
	row := func(name string, p phase) []string {
		worst, over := p.secondsOver(25)
		return []string{name, num(rate), num(p.Throughput), num(p.P50), num(p.P99), num(worst),
			fmt.Sprintf("%d of %d", over, len(p.SecondP99)), num(p.CPU.Machine), p.CPU.busy(p.Throughput),
			num(p.CPU.PostgreSQL), num(p.WALPerOp / 1024)}
	}
	res.Tables = append(res.Tables, Table{
		Title: fmt.Sprintf("fixed rate for %s (latency from the moment each request was due)", r.size.fixedRate),
		Header: []string{"", "rate/s", "achieved/s", "p50 ms", "p99 ms", "worst second's p99", "seconds with p99 > 25 ms",
			"CPU ms/order", "machine busy", "PostgreSQL ms/order", "WAL KiB/order"},
		Rows: [][]string{row("api", fr), row(fmt.Sprintf("pgbench -R, %d clients", fixedRateClients), pgfr)},
		Data: []map[string]any{{"fixedRate": fr, "pgbenchFixedRate": pgfr}},
	})
	if probe != nil {
		disk := func(name string, p phase) []string {
			_, over := p.secondsOver(25)
			worstSync, slowSyncs := worstAndOver(p.SecondDiskSync, 25)
			return []string{name, num(worstSync), fmt.Sprintf("%d of %d", slowSyncs, len(p.SecondDiskSync)),
				fmt.Sprintf("%d of %d", slowTogether(p.SecondP99, p.SecondDiskSync, 25), over)}
		}
		res.Tables = append(res.Tables, Table{
			Title:  "the disk's syncs during each load (the probe's)",
			Header: []string{"", "slowest sync ms", "seconds with a sync > 25 ms", "seconds with p99 > 25 ms that met one (in that second or the one before)"},
			Rows:   [][]string{disk("api", fr), disk("pgbench -R", pgfr)},
		})
	}
	if wb != nil {
		written := func(name string, p phase) []string {
			most, busiest := worstAt(p.SecondWriteback)
			_, slowest := worstAt(p.SecondP99)
			return []string{name, num(medianOf(p.SecondWriteback)),
				num(most), secondNo(busiest), num(secondFigure(p.SecondP99, busiest)),
				secondNo(slowest), num(secondFigure(p.SecondWriteback, slowest))}
		}
		res.Tables = append(res.Tables, Table{
			Title: "the machine's writeback during each load (MiB written out to disk per second; seconds counted from 1)",
			Header: []string{"", "median second MiB", "most in a second MiB", "in second", "that second's p99 ms",
				"the worst second (p99)", "its MiB"},
			Rows: [][]string{written("api", fr), written("pgbench -R", pgfr)},
		})
	}
	// Where the CPU per order goes at the fixed rate, as at each level of the closed loops.
	res.Tables = append(res.Tables, Table{
		Title:  "CPU time per order at the fixed rate, ms",
		Header: []string{"", "machine", "api process", "load generator", "PostgreSQL", "RabbitMQ", "rest"},
		Rows: [][]string{append([]string{"api"}, apiCPUCells(fr.CPU)...),
			append([]string{"pgbench -R"}, apiCPUCells(pgfr.CPU)...)},
	})
	return fr, nil
}

// walPerOrderBound bounds the WAL an order writes at the fixed rate, in bytes: the API's
// statement and its relay's mark wrote about 3.5 KiB, pgbench's statement 2.5 KiB, and the
// first change to a page after a checkpoint writes the whole page.
const walPerOrderBound = 6 << 10

// prepareWAL makes sure that the server has need WAL files of fileSize bytes ready, and
// returns how many are ready ahead of its write position and whether it had to make them.
// PostgreSQL creates a WAL file where it finds none to reuse by writing the whole file with
// zeros and syncing it, and every commit waits for that; at a checkpoint it keeps the files
// before the checkpoint for reuse, as many as its recent checkpoints' distance calls for,
// within max_wal_size. A server that has been writing at the rate has them; an idle or new
// one does not, and the load would measure that instead of its own work. Where fewer files
// are ahead, prepareWAL writes logical messages (WAL only, no table) to fill need files and
// checkpoints, so that the server keeps them: all need, not only the files missing, since
// the writing first fills the files ahead, and the checkpoint keeps as many as it has seen
// written since the last one (within max_wal_size).
func prepareWAL(ctx context.Context, pool *sql.DB, need, fileSize int64) (ahead int64, prepared bool, err error) {
	if ahead, err = walFilesAhead(ctx, pool); err != nil || ahead >= need {
		return ahead, false, err
	}
	const chunk = 1 << 20
	_, err = pool.ExecContext(ctx, `SELECT count(pg_logical_emit_message(false, 'orderflow-bench', repeat('x', $1)))
		FROM generate_series(1, $2)`, chunk, need*fileSize/chunk)
	if err != nil {
		return 0, false, fmt.Errorf("write WAL: %w", err)
	}
	if err := checkpoint(ctx, pool); err != nil {
		return 0, false, err
	}
	ahead, err = walFilesAhead(ctx, pool)
	return ahead, err == nil, err
}

// checkpoint runs a CHECKPOINT on pool's server.
func checkpoint(ctx context.Context, pool *sql.DB) error {
	if _, err := pool.ExecContext(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// walFilesAhead counts the server's WAL files ahead of its write position.
func walFilesAhead(ctx context.Context, pool *sql.DB) (int64, error) {
	var n int64
	err := pool.QueryRowContext(ctx, `SELECT count(*) FROM pg_ls_waldir()
		WHERE name ~ '^[0-9A-F]{24}$' AND name > pg_walfile_name(pg_current_wal_insert_lsn())`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count the WAL files ahead: %w", err)
	}
	return n, nil
}

// vacuum runs VACUUM in each of the databases dbs and returns how long it took: the intake
// updates the catalogue's rows thousands of times a second, and on a server without
// autovacuum each phase would pay for the row versions of the ones before.
func vacuum(ctx context.Context, e *env, dbs ...string) (time.Duration, error) {
	start := time.Now()
	for _, name := range dbs {
		pool, err := e.openDB(ctx, name, 1)
		if err != nil {
			return 0, err
		}
		_, err = pool.ExecContext(ctx, `VACUUM`)
		pool.Close()
		if err != nil {
			return 0, fmt.Errorf("vacuum %s: %w", name, err)
		}
	}
	return time.Since(start), nil
}

// meter measures the machine's CPU time (as intakeRun.measure does), the WAL the API's
// server wrote and the checkpoints it began, the disk probe's syncs and the machine's
// writeback, from start to stop.
type meter struct {
	in *intakeRun
	// syncs and written are the disk probe's syncs and the machine's writeback by the second,
	// nil where they are not measured; probeErr and writebackErr are the errors that stopped
	// their samplers.
	syncs, written         *secondFigures
	probeErr, writebackErr error
	ctx                    context.Context
	once                   sync.Once
	started                chan struct{} // closed once the readings at the start are taken
	cpu                    cpuTimes
	lsn                    string
	ckpts                  int
	err                    error
}

func (in *intakeRun) newMeter(ctx context.Context, syncs, written *secondFigures) *meter {
	return &meter{in: in, ctx: ctx, syncs: syncs, written: written, started: make(chan struct{})}
}

// start takes the readings at the start, in the background: it is called on a load's
// schedule. Calls after the first do nothing.
func (m *meter) start() {
	m.once.Do(func() {
		for _, s := range []*secondFigures{m.syncs, m.written} {
			if s != nil {
				s.restart()
			}
		}
		go func() {
			defer close(m.started)
			m.cpu = readCPU(m.in.apiPid)
			m.err = m.in.e.pool.QueryRowContext(m.ctx, `SELECT pg_current_wal_insert_lsn()::text, `+checkpointsBegun+` FROM pg_stat_bgwriter`).Scan(&m.lsn, &m.ckpts)
		}()
	})
}

// stop sets p's CPU and WAL per operation from start until now (from now, when start was not
// called).
func (m *meter) stop(p *phase) error {
	m.start()
	<-m.started
	if m.err != nil {
		return fmt.Errorf("read WAL position: %w", m.err)
	}
	p.cpu = readCPU(m.in.apiPid).sub(m.cpu)
	p.CPU = p.cpu.perOp(p.Done)
	var wal float64
	var ckpts int
	err := m.in.e.pool.QueryRowContext(m.ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn), `+checkpointsBegun+` FROM pg_stat_bgwriter`, m.lsn).Scan(&wal, &ckpts)
	if err != nil {
		return fmt.Errorf("read WAL position: %w", err)
	}
	p.WALPerOp = wal / float64(max(p.Done, 1))
	ckpts -= m.ckpts
	p.Checkpoints = &ckpts
	// A sampler that failed takes nothing from the load's figures; run notes it in the setup.
	if m.syncs != nil {
		p.SecondDiskSync, m.probeErr = m.syncs.first(len(p.SecondP99))
	}
	if m.written != nil {
		p.SecondWriteback, m.writebackErr = m.written.first(len(p.SecondP99))
	}
	return nil
}

// checkpointsBegun is the server's count of checkpoints begun, a column of pg_stat_bgwriter.
const checkpointsBegun = `checkpoints_timed + checkpoints_req`

// apiCPUCells are the intake's CPU columns of the API's phase: the machine and its parts.
func apiCPUCells(c *cpuPerOp) []string {
	if c == nil {
		return dashes(6)
	}
	return []string{num(c.Machine), num(c.API), num(c.LoadGenerator), num(c.PostgreSQL), num(c.RabbitMQ), num(c.Rest)}
}

// refCPUCells are the intake's CPU columns of a pgbench phase: the machine and PostgreSQL.
func refCPUCells(c *cpuPerOp) []string {
	if c == nil {
		return dashes(2)
	}
	return []string{num(c.Machine), num(c.PostgreSQL)}
}

// dashes are n cells with no figure.
func dashes(n int) []string {
	d := make([]string, n)
	for i := range d {
		d[i] = "-"
	}
	return d
}

// drainOutbox waits until the outbox of pool's database holds no unpublished event, at most
// limit, and returns how long it waited.
func drainOutbox(ctx context.Context, pool *sql.DB, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		var waiting int
		err := pool.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&waiting)
		if err != nil {
			return 0, fmt.Errorf("outbox backlog: %w", err)
		}
		if waiting == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("the api's relay left %d events unpublished for %s", waiting, limit)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errTooManyClients means that PostgreSQL refused a connection: max_connections reached.
var errTooManyClients = errors.New("PostgreSQL refused a connection: too many clients")

var (
	pgbenchTPS     = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	pgbenchLatency = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	pgbenchFailed  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
	pgbenchDone    = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
)

// merge sums phases of the same load into one.
func merge(ps []phase) phase {
	var m phase
	var lat latencies
	var avg float64
	for _, p := range ps {
		m.Clients, m.Errors, m.Elapsed = p.Clients, m.Errors+p.Errors, m.Elapsed+p.Elapsed
		m.cpu = m.cpu.add(p.cpu)
		lat = append(lat, p.lat...)
		m.Done += p.Done
		avg += p.P50 * float64(p.Done)
	}
	if len(lat) > 0 {
		m.finish(lat)
		m.CPU = m.cpu.perOp(m.Done)
		return m
	}
	// pgbench phases: no latencies of their own, an average weighted by transactions.
	m.Throughput = float64(m.Done) / m.Elapsed.Seconds()
	m.P50 = avg / float64(max(m.Done, 1))
	m.CPU = m.cpu.perOp(m.Done)
	return m
}

// fixedRateClients is pgbench's connections in the fixed-rate phase: enough that a stall
// of a few of them does not hold back the schedule.
const fixedRateClients = 32

// pgbenchAtRate runs the intake script at rate transactions per second for warm and then d
// (pgbench -R), and measures each transaction due in d from its scheduled start, as
// fixedRate measures requests, from pgbench's per-transaction log. measuring is called when
// warm has passed since pgbench started; its schedule begins once its connections are open,
// about half a second later with 32 clients here, so a measurement from then on takes in
// that much of the warm-up too (2% of a 30 s phase).
func pgbenchAtRate(ctx context.Context, name, script string, cat catalogue, clients int, rate float64, warm, d time.Duration, measuring func()) (phase, error) {
	dir, err := os.MkdirTemp("", "orderflow-bench-pgbench-")
	if err != nil {
		return phase{}, err
	}
	defer os.RemoveAll(dir)
	timer := time.AfterFunc(warm, measuring)
	defer timer.Stop()
	p, err := pgbench(ctx, name, script, cat, clients, warm+d,
		"-R", strconv.FormatFloat(rate, 'f', 1, 64), "-l", "--log-prefix", filepath.Join(dir, "log"))
	if err != nil {
		return p, err
	}
	logs, err := filepath.Glob(filepath.Join(dir, "log.*"))
	if err != nil || len(logs) == 0 {
		return p, fmt.Errorf("pgbench -R: no transaction log in %s", dir)
	}
	type tx struct {
		due time.Time
		lat time.Duration
	}
	var txs []tx
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			return p, err
		}
		// client_id transaction_no time script_no time_epoch time_us schedule_lag, where
		// time (µs) counts from the scheduled start under -R, and time_epoch and time_us
		// give the moment the transaction ended.
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 6 {
				continue
			}
			var n [3]int64
			for i, field := range []string{fields[2], fields[4], fields[5]} {
				if n[i], err = strconv.ParseInt(field, 10, 64); err != nil {
					return p, fmt.Errorf("pgbench log %s: %q: %w", f, line, err)
				}
			}
			lat := time.Duration(n[0]) * time.Microsecond
			txs = append(txs, tx{due: time.Unix(n[1], n[2]*1000).Add(-lat), lat: lat})
		}
	}
	var (
		lat     latencies
		seconds bySecond
		start   time.Time
	)
	for _, t := range txs {
		if start.IsZero() || t.due.Before(start) {
			start = t.due
		}
	}
	from := start.Add(warm)
	for _, t := range txs {
		if t.due.Before(from) {
			p.Warm++
			continue
		}
		lat = append(lat, t.lat)
		seconds.add(int(t.due.Sub(from)/time.Second), t.lat)
	}
	p.Rate, p.Elapsed = rate, d
	p.finish(lat)
	p.SecondP99 = seconds.p99s()
	return p, nil
}

// pgbench runs the intake script with clients connections (and as many threads) for d
// against database name; P50 holds pgbench's average latency (it reports no percentiles
// without per-transaction logs).
func pgbench(ctx context.Context, name, script string, cat catalogue, clients int, d time.Duration, extra ...string) (phase, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-n", "-f", script, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(clients),
		"-T", strconv.Itoa(secs), "-M", "prepared",
		"-D", "ufirst=" + strconv.Itoa(cat.firstUser), "-D", "users=" + strconv.Itoa(cat.users),
		"-D", "pfirst=" + strconv.Itoa(cat.firstProduct), "-D", "products=" + strconv.Itoa(cat.products),
		"-h", "127.0.0.1", "-U", "postgres"}
	cmd := exec.CommandContext(ctx, "pgbench", append(append(args, extra...), name)...)
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("too many clients")) {
		return phase{}, fmt.Errorf("pgbench with %d clients: %w", clients, errTooManyClients)
	}
	if err != nil {
		return phase{}, fmt.Errorf("pgbench with %d clients: %w\n%s", clients, err, out)
	}
	return pgbenchPhase(out, clients, secs)
}

// pgbenchPhase reads the output of a pgbench run of clients connections for secs seconds.
func pgbenchPhase(out []byte, clients, secs int) (phase, error) {
	p := phase{Clients: clients, Elapsed: time.Duration(secs) * time.Second}
	m := pgbenchTPS.FindSubmatch(out)
	if m == nil {
		return p, fmt.Errorf("pgbench: no tps in its output:\n%s", out)
	}
	p.Throughput, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := pgbenchLatency.FindSubmatch(out); m != nil {
		p.P50, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if m := pgbenchDone.FindSubmatch(out); m != nil {
		p.Done, _ = strconv.Atoi(string(m[1]))
	}
	// pgbench's tps leaves out the time its clients took to connect, which counts in its -T:
	// the phase's time is the one its transactions ran in, as the API's connections are
	// open before its turn.
	if p.Throughput > 0 && p.Done > 0 {
		p.Elapsed = time.Duration(float64(p.Done) / p.Throughput * float64(time.Second))
	}
	if m := pgbenchFailed.FindSubmatch(out); m != nil {
		p.Errors, _ = strconv.Atoi(string(m[1]))
	}
	if p.Errors > 0 {
		return p, fmt.Errorf("pgbench with %d clients: %d failed transactions", clients, p.Errors)
	}
	return p, nil
}
