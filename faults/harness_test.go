//go:build faults

package faults

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"orderflow/api/oas"
	"orderflow/configuration"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/db"
)

// binary is the orderflow binary under test, built once by TestMain.
var binary string

// configDir is the committed configuration directory, as an absolute path.
var configDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "orderflow-faults")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "orderflow")
	build := exec.Command("go", "build", "-o", binary, "../cmd/orderflow")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build orderflow:", err)
		os.Exit(1)
	}
	if configDir, err = filepath.Abs("../configuration"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	printSummary(os.Stdout)
	os.RemoveAll(dir)
	os.Exit(code)
}

// row is one line of the summary table.
type row struct {
	scenario   string
	sent       int
	created    int
	accounted  int
	completed  int
	expired    int
	duplicates int
	// absorbed counts the event deliveries beyond one per event that the workers
	// acknowledged without effect (-1 when a worker was killed and its counts are lost).
	absorbed int
	result   string
	notes    string
}

var (
	summaryMu sync.Mutex
	summary   []*row
)

// record adds the test's line to the summary table; its result is filled in when the test ends.
func record(t *testing.T) *row {
	r := &row{scenario: strings.TrimPrefix(t.Name(), "TestFault")}
	summaryMu.Lock()
	summary = append(summary, r)
	summaryMu.Unlock()
	t.Cleanup(func() {
		r.result = "PASS"
		if t.Failed() {
			r.result = "FAIL"
		}
	})
	return r
}

func printSummary(w io.Writer) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	if len(summary) == 0 {
		return
	}
	fmt.Fprintln(w, "\nfault suite summary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\torders sent\t201 created\taccounted for\tcompleted\texpired\tduplicates\tcopies absorbed\tresult\tnotes")
	for _, r := range summary {
		absorbed := "n/a"
		if r.absorbed >= 0 {
			absorbed = strconv.Itoa(r.absorbed)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n",
			r.scenario, r.sent, r.created, r.accounted, r.completed, r.expired, r.duplicates, absorbed, r.result, r.notes)
	}
	tw.Flush()
}

// Timings short enough that every order ends completed or expired within seconds.
var timings = map[string]string{
	"ORDERFLOW_ORDERS_PAYMENTDELAY":    "200ms",
	"ORDERFLOW_ORDERS_EXPIREAFTER":     "3s",
	"ORDERFLOW_ORDERS_EXPIRYINTERVAL":  "1s",
	"ORDERFLOW_OUTBOX_POLLINTERVAL":    "100ms",
	"ORDERFLOW_HTTP_SHUTDOWNTIMEOUT":   "5s",
	"ORDERFLOW_DATABASE_MAXCONNS":      "4",
	"ORDERFLOW_LOG_LEVEL":              "info",
	"ORDERFLOW_LOG_FORMAT":             "json",
	"ORDERFLOW_ORDERS_EXPIRYBATCHSIZE": "500",
}

// The fixture: products with stock that no test can exhaust, and customers.
const (
	fixtureProducts = 20
	fixtureUsers    = 10
	productStock    = 1_000_000
)

// env is one scenario's isolated system: its own database and exchange, the processes
// running on them, and a pool for the accounting.
type env struct {
	t        *testing.T
	cfg      *configuration.Config
	pool     *sql.DB
	logDir   string
	products []int
	users    []int
	procs    []*process
	// stock is the sum of every product's stock before the first order (the migrations
	// seed a few products of their own).
	stock int64
	// extraAcks is the number of acknowledged deliveries that are no order's event
	// (poison messages about unknown orders).
	extraAcks int
	// overrides replace the timings (and any other setting) for this environment's processes.
	overrides map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cfg := testenv.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := db.Open(ctx, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cfg: cfg, pool: pool, logDir: t.TempDir()}
	t.Cleanup(func() {
		for _, p := range e.procs {
			p.kill()
		}
		pool.Close()
		// testenv.Config's own clean-up, which runs after this one, deletes the exchange's
		// queues: the broker is shared, and quorum queues cost it file handles.
		if t.Failed() {
			for _, p := range e.procs {
				t.Logf("last lines of %s:\n%s", p.name, tail(p.logPath, 15))
			}
		}
	})
	e.seed(ctx)
	return e
}

// seed inserts the products and customers.
func (e *env) seed(ctx context.Context) {
	e.t.Helper()
	rows, err := e.pool.QueryContext(ctx, `
		INSERT INTO products (name, price, stock, created_at, updated_at)
		SELECT 'Fault product ' || g, 1.25 * g, $2, now(), now() FROM generate_series(1, $1) g
		RETURNING id`, fixtureProducts, productStock)
	if err != nil {
		e.t.Fatalf("insert products: %v", err)
	}
	e.products = testutil.Column[int](e.t, rows)
	rows, err = e.pool.QueryContext(ctx, `
		INSERT INTO users (name, email, password_hash, role, created_at, updated_at)
		SELECT 'Fault customer ' || g, 'fault' || g || '@example.com', 'not-a-hash', 'customer', now(), now()
		FROM generate_series(1, $1) g
		RETURNING id`, fixtureUsers)
	if err != nil {
		e.t.Fatalf("insert users: %v", err)
	}
	e.users = testutil.Column[int](e.t, rows)
	if err := e.pool.QueryRowContext(ctx, `SELECT sum(stock) FROM products`).Scan(&e.stock); err != nil {
		e.t.Fatalf("sum stock: %v", err)
	}
}

// process is one orderflow process (api, worker or cronjob) run from the binary.
type process struct {
	name    string
	kind    string
	addr    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// start runs `orderflow kind` on a free address and waits until it answers /readyz.
func (e *env) start(kind string) *process {
	e.t.Helper()
	return e.startAt(kind, freeAddress(e.t))
}

// startAt runs `orderflow kind` listening on addr (so that a restarted api keeps its URL).
func (e *env) startAt(kind, addr string) *process {
	e.t.Helper()
	p := &process{
		name:    fmt.Sprintf("%s-%d", kind, len(e.procs)+1),
		kind:    kind,
		addr:    addr,
		done:    make(chan struct{}),
		logPath: filepath.Join(e.logDir, fmt.Sprintf("%s-%d.log", kind, len(e.procs)+1)),
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	vars := map[string]string{
		"ORDERFLOW_CONFIG_DIR":        configDir,
		"ORDERFLOW_DATABASE_HOST":     e.cfg.Database.Host,
		"ORDERFLOW_DATABASE_PORT":     strconv.Itoa(e.cfg.Database.Port),
		"ORDERFLOW_DATABASE_NAME":     e.cfg.Database.Name,
		"ORDERFLOW_RABBITMQ_HOST":     e.cfg.RabbitMQ.Host,
		"ORDERFLOW_RABBITMQ_PORT":     strconv.Itoa(e.cfg.RabbitMQ.Port),
		"ORDERFLOW_RABBITMQ_EXCHANGE": e.cfg.RabbitMQ.Exchange,
		"ORDERFLOW_HTTP_ADDRESS":      addr,
	}
	for k, v := range timings {
		vars[k] = v
	}
	for k, v := range e.overrides {
		vars[k] = v
	}
	p.cmd = exec.Command(binary, kind)
	for _, kv := range os.Environ() {
		// Every ORDERFLOW_* variable names a configuration key; the test decides them all.
		if !strings.HasPrefix(kv, "ORDERFLOW_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	for k, v := range vars {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		e.t.Fatalf("start %s: %v", kind, err)
	}
	go func() {
		_ = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	e.procs = append(e.procs, p)
	deadline := time.Now().Add(60 * time.Second)
	for !p.ready() {
		select {
		case <-p.done:
			e.t.Fatalf("%s exited while starting:\n%s", p.name, tail(p.logPath, 10))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not ready within 60s:\n%s", p.name, tail(p.logPath, 10))
		}
	}
	return p
}

func (p *process) url() string { return "http://" + p.addr }

func (p *process) ready() bool {
	ok, _ := p.readiness()
	return ok
}

// brokerConnected tells whether the process's /readyz reports its broker connection up, which
// a process that only publishes does not need to be ready.
func (p *process) brokerConnected() bool {
	_, body := p.readiness()
	return strings.Contains(body, `"rabbitmq":"ok"`)
}

// readiness asks the process's /readyz: whether it is ready, and the body naming each check.
func (p *process) readiness() (bool, string) {
	resp, err := http.Get(p.url() + "/readyz")
	if err != nil {
		return false, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK, string(body)
}

// kill ends the process with SIGKILL and waits for it.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// running reports whether the process has not exited.
func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// metrics reads the process's /metrics: every sample by its name with labels, as written.
func (p *process) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(p.url() + "/metrics")
	if err != nil {
		t.Fatalf("read %s metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("read %s metrics: %s", p.name, resp.Status)
	}
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// logLines counts the lines of the process's log that contain substr.
func (p *process) logLines(substr string) int {
	b, _ := os.ReadFile(p.logPath)
	return strings.Count(string(b), substr)
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// load is a steady stream of orders through the generated client: random customers, one to
// three different products, quantities 1 to 5. It counts the status code of every response
// (0 for no response) and keeps the id of every created order.
type load struct {
	mu      sync.Mutex
	sent    int
	codes   map[int]int
	created []int
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// statusCounter records the status code of every order request at the transport, whether
// or not the client can decode the body.
type statusCounter struct {
	l    *load
	next http.RoundTripper
}

func (s statusCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(r)
	s.l.mu.Lock()
	s.l.sent++
	if err != nil {
		s.l.codes[0]++
	} else {
		s.l.codes[resp.StatusCode]++
	}
	s.l.mu.Unlock()
	return resp, err
}

type bearer string

func (b bearer) BearerAuth(context.Context, oas.OperationName) (oas.BearerAuth, error) {
	return oas.BearerAuth{Token: string(b)}, nil
}

type noAuth struct{}

func (noAuth) BearerAuth(context.Context, oas.OperationName) (oas.BearerAuth, error) {
	return oas.BearerAuth{}, fmt.Errorf("not signed in")
}

// startLoad places rate orders per second from workers goroutines against api until stopped.
func (e *env) startLoad(api *process, rate, workers int) *load {
	e.t.Helper()
	ctx := context.Background()
	anon, err := oas.NewClient(api.url(), noAuth{})
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := anon.Login(ctx, &oas.LoginRequest{Email: e.cfg.Admin.Email, Password: e.cfg.Admin.Password})
	if err != nil {
		e.t.Fatalf("log in as the administrator: %v", err)
	}
	l := &load{codes: map[int]int{}, stop: make(chan struct{})}
	httpClient := &http.Client{
		Timeout:   15 * time.Second,
		Transport: statusCounter{l: l, next: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	client, err := oas.NewClient(api.url(), bearer(res.Token), oas.WithClient(httpClient))
	if err != nil {
		e.t.Fatal(err)
	}
	interval := time.Duration(workers) * time.Second / time.Duration(rate)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				out, err := client.CreateOrder(ctx, e.randomOrder(rng), oas.CreateOrderParams{})
				if err == nil {
					l.mu.Lock()
					l.created = append(l.created, out.Response.ID)
					l.mu.Unlock()
				}
			}
		}()
	}
	return l
}

func (e *env) randomOrder(rng *rand.Rand) *oas.OrderCreate {
	n := 1 + rng.IntN(3)
	var items []oas.OrderItemInput
	for _, i := range rng.Perm(len(e.products))[:n] {
		items = append(items, oas.OrderItemInput{ProductId: e.products[i], Quantity: 1 + rng.IntN(5)})
	}
	return &oas.OrderCreate{UserId: oas.NewOptInt(e.users[rng.IntN(len(e.users))]), Items: items}
}

// finish stops the stream and waits for the requests in flight; later calls do nothing.
func (l *load) finish() {
	l.stopped.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// conclude ends the load, waits for the system to settle, accounts for every order, and
// checks that every request was answered with one of the accepted statuses (0 for none).
func (e *env) conclude(l *load, r *row, accepted ...int) {
	e.t.Helper()
	l.finish()
	e.settle(settleTime)
	e.account(l, r)
	answered := 0
	for _, code := range accepted {
		answered += l.count(code)
	}
	if answered != l.sent {
		e.t.Errorf("%d of %d requests got a status other than %v (%s)", l.sent-answered, l.sent, accepted, l.codesText())
	}
}

// codesText lists the status codes counted, such as "201×512 503×7 none×3".
func (l *load) codesText() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var codes []int
	for c := range l.codes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		name := strconv.Itoa(c)
		if c == 0 {
			name = "none"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", name, l.codes[c]))
	}
	return strings.Join(parts, " ")
}

// count returns how many responses had the code (0: no response).
func (l *load) count(code int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.codes[code]
}

// settle waits until no order is pending or processing, no outbox row is unpublished and
// every decided order has its notification, or the deadline passes.
func (e *env) settle(deadline time.Duration) {
	e.t.Helper()
	ctx := context.Background()
	end := time.Now().Add(deadline)
	var open, unpublished, missing int
	for {
		err := e.pool.QueryRowContext(ctx, `
			SELECT
				(SELECT count(*) FROM orders WHERE status IN ('pending', 'processing')),
				(SELECT count(*) FROM outbox WHERE published_at IS NULL),
				(SELECT count(*) FROM orders o WHERE o.status IN ('completed', 'expired') AND NOT EXISTS (
					SELECT 1 FROM notifications n WHERE n.order_id = o.id AND n.event_type =
						CASE o.status WHEN 'completed' THEN 'OrderCompleted' ELSE 'OrderExpired' END))`,
		).Scan(&open, &unpublished, &missing)
		if err == nil && open == 0 && unpublished == 0 && missing == 0 {
			return
		}
		if time.Now().After(end) {
			e.t.Errorf("not settled after %s: %d orders pending or processing, %d outbox rows unpublished, %d notifications missing (last error %v)",
				deadline, open, unpublished, missing, err)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// account checks every order of the database and every order the load was told was
// created, fills r, and reports each broken promise as a test error.
func (e *env) account(l *load, r *row) {
	e.t.Helper()
	t := e.t
	ctx := context.Background()
	l.mu.Lock()
	created := append([]int(nil), l.created...)
	r.sent = l.sent
	l.mu.Unlock()
	r.created = len(created)
	r.notes = l.codesText()

	seen := map[int]bool{}
	for _, id := range created {
		if seen[id] {
			r.duplicates++
			t.Errorf("order %d was returned by two 201 responses", id)
		}
		seen[id] = true
	}

	type order struct {
		status          string
		items           int
		total, itemsSum string
		completedNotes  int
		expiredNotes    int
		createdEvents   int
		completedEvents int
		expiredEvents   int
	}
	rows, err := e.pool.QueryContext(ctx, `
		SELECT o.id, o.status,
			(SELECT count(*) FROM order_items i WHERE i.order_id = o.id),
			o.total::text,
			(SELECT coalesce(sum(i.quantity * i.price), 0)::numeric(12,2)::text FROM order_items i WHERE i.order_id = o.id),
			(SELECT count(*) FROM notifications n WHERE n.order_id = o.id AND n.event_type = 'OrderCompleted'),
			(SELECT count(*) FROM notifications n WHERE n.order_id = o.id AND n.event_type = 'OrderExpired'),
			(SELECT count(*) FROM outbox x WHERE (x.payload->'data'->>'orderId')::int = o.id AND x.routing_key = 'order.created'),
			(SELECT count(*) FROM outbox x WHERE (x.payload->'data'->>'orderId')::int = o.id AND x.routing_key = 'order.completed'),
			(SELECT count(*) FROM outbox x WHERE (x.payload->'data'->>'orderId')::int = o.id AND x.routing_key = 'order.expired')
		FROM orders o`)
	if err != nil {
		t.Fatalf("read orders: %v", err)
	}
	orders := map[int]order{}
	for rows.Next() {
		var id int
		var o order
		if err := rows.Scan(&id, &o.status, &o.items, &o.total, &o.itemsSum, &o.completedNotes, &o.expiredNotes,
			&o.createdEvents, &o.completedEvents, &o.expiredEvents); err != nil {
			t.Fatal(err)
		}
		orders[id] = o
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for id := range seen {
		if _, ok := orders[id]; !ok {
			problem("order %d got a 201 but is not in the database", id)
		}
	}
	// An order the client never heard of comes from a request without an answer (or a 5xx
	// after its commit): there can be no more of them than such requests.
	unanswered := 0
	for code, n := range l.codes {
		if code == 0 || code >= 500 {
			unanswered += n
		}
	}
	if extra := len(orders) - len(seen); extra > unanswered {
		problem("%d orders in the database that no 201 announced, but only %d requests went unanswered", extra, unanswered)
	}
	for id, o := range orders {
		if o.items == 0 {
			problem("order %d has no items", id)
		}
		if o.total != o.itemsSum {
			problem("order %d: total %s, items sum to %s", id, o.total, o.itemsSum)
		}
		if o.createdEvents != 1 {
			problem("order %d has %d OrderCreated outbox rows", id, o.createdEvents)
			if o.createdEvents > 1 {
				r.duplicates++
			}
		}
		if o.completedNotes > 1 || o.expiredNotes > 1 || o.completedEvents > 1 || o.expiredEvents > 1 {
			r.duplicates++
		}
		ok := false
		switch o.status {
		case "completed":
			ok = o.completedNotes == 1 && o.expiredNotes == 0 && o.completedEvents == 1 && o.expiredEvents == 0
			r.completed++
		case "expired":
			ok = o.expiredNotes == 1 && o.completedNotes == 0 && o.expiredEvents == 1 && o.completedEvents == 0
			r.expired++
		}
		if !ok {
			problem("order %d ended %s with %d/%d OrderCompleted, %d/%d OrderExpired notifications/events",
				id, o.status, o.completedNotes, o.completedEvents, o.expiredNotes, o.expiredEvents)
		} else if seen[id] {
			r.accounted++
		}
	}

	var unpublished int
	if err := e.pool.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&unpublished); err != nil {
		t.Fatal(err)
	}
	if unpublished != 0 {
		problem("%d outbox rows unpublished", unpublished)
	}

	// Stock: what the products hold plus what live orders reserve is what the fixture put in.
	var stock, reserved int64
	if err := e.pool.QueryRowContext(ctx, `
		SELECT (SELECT sum(stock) FROM products),
			(SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status <> 'expired')`,
	).Scan(&stock, &reserved); err != nil {
		t.Fatal(err)
	}
	if want := e.stock; stock+reserved != want {
		problem("stock %d + reserved %d = %d, want %d (%+d units)", stock, reserved, stock+reserved, want, stock+reserved-want)
	}

	if r.created == 0 {
		problem("no order was created")
	}
	if r.completed == 0 || r.expired == 0 {
		problem("%d orders completed and %d expired: both paths should run", r.completed, r.expired)
	}
	for _, p := range problems {
		t.Error(p)
	}
	r.absorbed = -1
	if acked, ok := e.acked(); ok {
		// One OrderCreated per order and one OrderCompleted or OrderExpired per decided order.
		r.absorbed = acked - len(orders) - r.completed - r.expired - e.extraAcks
	}
	t.Logf("%d requests (%s), %d orders in the database, %d accounted for: %d completed, %d expired",
		r.sent, r.notes, len(orders), r.accounted, r.completed, r.expired)
}

// acked sums the deliveries that the workers acknowledged, when every worker ever started
// still runs (a killed worker's counts are lost).
func (e *env) acked() (int, bool) {
	n := 0.0
	for _, p := range e.procs {
		if p.kind != "worker" {
			continue
		}
		if !p.running() {
			return 0, false
		}
		for k, v := range p.metrics(e.t) {
			if strings.HasPrefix(k, "orderflow_events_consumed_total{") && strings.Contains(k, `outcome="ack"`) {
				n += v
			}
		}
	}
	return int(n), true
}

// system starts the standard system (one api, one worker, one cronjob).
func (e *env) system() (api, worker, cron *process) {
	e.t.Helper()
	api = e.start("api")
	worker = e.start("worker")
	cron = e.start("cronjob")
	return api, worker, cron
}

// command runs an administration command and fails the test when it fails.
func command(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
