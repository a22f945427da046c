package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/shopspring/decimal"

	"orderflow/configuration"
	"orderflow/ent"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/bus"
	"orderflow/platform/db"
)

func testLogger() *slog.Logger {
	if os.Getenv("ORDERFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is one test's database, exchange and bus connection.
type env struct {
	cfg    *configuration.Config
	pool   *sql.DB
	client *ent.Client
	conn   *bus.Conn
}

func newEnv(t testing.TB) *env {
	t.Helper()
	cfg := testenv.Config(t)
	pool := testenv.Pool(t, cfg.Database)
	e := &env{cfg: cfg, pool: pool, client: db.NewClient(pool)}
	// testenv.Config deletes the exchange's queues when the test ends.
	e.conn = e.newConn(t, cfg.RabbitMQ.Exchange)
	return e
}

// newConn starts a bus connection named name (the name testenv.CloseConnections looks for).
func (e *env) newConn(t testing.TB, name string) *bus.Conn {
	t.Helper()
	return e.newConnTo(t, e.cfg.RabbitMQ, name)
}

// newConnTo starts a bus connection named name to the broker of cfg.
func (e *env) newConnTo(t testing.TB, cfg configuration.RabbitMQ, name string) *bus.Conn {
	t.Helper()
	c := bus.NewConn(cfg, testLogger(), bus.Options{Name: name})
	c.Start()
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// startRelay starts a relay with its own publisher on conn, stopped when the test ends.
func (e *env) startRelay(t testing.TB, conn *bus.Conn, tune func(*Relay)) *Relay {
	t.Helper()
	r := NewRelay(e.pool, bus.NewPublisher(conn), e.cfg.Outbox, testLogger())
	if tune != nil {
		tune(r)
	}
	r.Start()
	t.Cleanup(func() {
		if err := r.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return r
}

// write commits n OrderCompleted events, in transactions of up to 500.
func (e *env) write(t testing.TB, n int) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	for done := 0; done < n; {
		batch := make([]events.Event, min(500, n-done))
		for i := range batch {
			batch[i] = completed(done + i + 1)
		}
		err := db.WithTx(context.Background(), e.client, func(tx *ent.Tx) error {
			got, err := WriteBatch(context.Background(), tx, events.SourceWorker, batch, nil)
			ids = append(ids, got...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		done += len(batch)
	}
	return ids
}

// count consumes the order-completed queue and counts deliveries per message id.
func (e *env) count(t *testing.T) *counter {
	t.Helper()
	c := &counter{seen: map[string]int{}}
	cons := bus.NewConsumer(e.conn, bus.ConsumerOrderCompleted, 1000, func(_ context.Context, d bus.Delivery) error {
		c.add(d.MessageID)
		return nil
	})
	cons.Start()
	t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	return c
}

func completed(orderID int) events.OrderCompleted {
	return events.OrderCompleted{OrderID: orderID, UserID: 2, Total: events.NewMoney(decimal.RequireFromString("12.30")), CompletedAt: time.Now()}
}

type counter struct {
	mu   sync.Mutex
	seen map[string]int
	n    int
}

func (c *counter) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[id]++
	c.n++
}

// snapshot returns the distinct ids seen and the total deliveries.
func (c *counter) snapshot() (distinct, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen), c.n
}

func (c *counter) duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := 0
	for _, n := range c.seen {
		d += n - 1
	}
	return d
}

func unpublished(t testing.TB, pool *sql.DB) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(`SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRelayRoundTrip: an event committed arrives once with the right properties and body; a
// rolled-back one never arrives. The poll interval is long, so the commit wakes the relay.
func TestRelayRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Outbox.PollInterval = configuration.Duration(time.Hour)
	e.startRelay(t, e.conn, nil)
	ctx := context.Background()

	_ = db.WithTx(ctx, e.client, func(tx *ent.Tx) error {
		if _, err := Write(ctx, tx, events.SourceAPI, completed(1), nil); err != nil {
			t.Fatal(err)
		}
		return errors.New("roll back")
	})
	var id uuid.UUID
	err := db.WithTx(ctx, e.client, func(tx *ent.Tx) error {
		var err error
		id, err = Write(ctx, tx, events.SourceAPI, completed(2), map[string]string{"x-request-id": "req-7"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the row marked published", func() bool { return unpublished(t, e.pool) == 0 })

	ch := testenv.AdminChannel(t, e.cfg.RabbitMQ)
	queue := e.conn.Topology().QueueName(bus.ConsumerOrderCompleted)
	var got []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, d)
	}
	if len(got) != 1 {
		t.Fatalf("%d messages in the queue, want 1", len(got))
	}
	d := got[0]
	if d.MessageId != id.String() || d.Type != events.TypeOrderCompleted || d.ContentType != events.ContentType ||
		d.DeliveryMode != amqp.Persistent || d.Timestamp.IsZero() || d.RoutingKey != events.RoutingKeyOrderCompleted ||
		d.Headers["x-request-id"] != "req-7" {
		t.Errorf("delivery properties %+v", d)
	}
	envl, ev, err := events.Decode(d.Body)
	if err != nil {
		t.Fatal(err)
	}
	if envl.ID != id.String() || envl.Source != events.SourceAPI || ev.(events.OrderCompleted).OrderID != 2 {
		t.Errorf("envelope %+v event %+v", envl, ev)
	}
	if !strings.Contains(string(d.Body), "12.30") {
		t.Errorf("body %s does not carry 12.30", d.Body)
	}
	var attempts int
	if err := e.pool.QueryRow(`SELECT attempts FROM outbox WHERE event_id = $1`, id).Scan(&attempts); err != nil || attempts != 1 {
		t.Errorf("attempts %d (%v), want 1", attempts, err)
	}
}

// TestRelayCrashBetweenPublishAndMark: a relay that dies after publishing a batch and before
// marking it leaves that batch unpublished; the next relay publishes it again, and only it.
func TestRelayCrashBetweenPublishAndMark(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Outbox.BatchSize = 100
	seen := e.count(t)
	e.write(t, 250)

	crashed := make(chan struct{})
	crasher := NewRelay(e.pool, bus.NewPublisher(e.conn), e.cfg.Outbox, testLogger())
	crasher.afterPublish = func() error {
		close(crashed)
		return errors.New("killed")
	}
	crasher.Start()
	<-crashed
	if err := crasher.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := unpublished(t, e.pool); n != 250 {
		t.Fatalf("%d rows unpublished after the crash, want 250", n)
	}

	e.startRelay(t, e.conn, nil)
	testutil.Eventually(t, 20*time.Second, "250 events delivered", func() bool { d, _ := seen.snapshot(); return d == 250 })
	testutil.Eventually(t, 10*time.Second, "every row marked", func() bool { return unpublished(t, e.pool) == 0 })
	// Wait for the redelivered batch to be counted before judging duplicates.
	testutil.Eventually(t, 10*time.Second, "the crashed batch delivered twice", func() bool { _, n := seen.snapshot(); return n >= 350 })
	if d := seen.duplicates(); d != 100 {
		t.Errorf("%d duplicates, want exactly the crashed batch of 100", d)
	}
}

// TestTwoRelays: two relays (two processes) on one table publish 5,000 rows, each once.
func TestTwoRelays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := e.count(t)
	other := e.newConn(t, e.cfg.RabbitMQ.Exchange+".second")
	e.write(t, 5000)
	e.startRelay(t, e.conn, nil)
	e.startRelay(t, other, nil)
	testutil.Eventually(t, 60*time.Second, "5,000 events delivered", func() bool { d, _ := seen.snapshot(); return d == 5000 })
	testutil.Eventually(t, 10*time.Second, "every row marked", func() bool { return unpublished(t, e.pool) == 0 })
	var maxAttempts int
	if err := e.pool.QueryRow(`SELECT max(attempts) FROM outbox`).Scan(&maxAttempts); err != nil || maxAttempts != 1 {
		t.Errorf("max attempts %d (%v), want 1", maxAttempts, err)
	}
	if d := seen.duplicates(); d != 0 {
		t.Errorf("%d events published twice", d)
	}
}

// TestRelayReconnects: the relay's broker connection is closed while events are written;
// every committed event arrives.
func TestRelayReconnects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := e.count(t)
	relayConn := e.newConn(t, e.cfg.RabbitMQ.Exchange+".relay")
	e.startRelay(t, relayConn, nil)
	e.write(t, 500)
	if n := testenv.CloseConnections(t, e.cfg.RabbitMQ.Exchange+".relay"); n != 1 {
		t.Fatalf("closed %d connections named %s, want 1", n, e.cfg.RabbitMQ.Exchange+".relay")
	}
	e.write(t, 500)
	testutil.Eventually(t, 60*time.Second, "1,000 events delivered", func() bool { d, _ := seen.snapshot(); return d == 1000 })
	testutil.Eventually(t, 10*time.Second, "every row marked", func() bool { return unpublished(t, e.pool) == 0 })
}

// TestRelayRecordsFailures: an event that cannot be routed stays unpublished with its error
// recorded, and does not hold back the others.
func TestRelayRecordsFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.write(t, 1)
	if _, err := e.pool.Exec(`UPDATE outbox SET routing_key = 'nowhere'`); err != nil {
		t.Fatal(err)
	}
	e.write(t, 3)
	seen := e.count(t)
	e.startRelay(t, e.conn, nil)
	testutil.Eventually(t, 10*time.Second, "three events delivered", func() bool { d, _ := seen.snapshot(); return d == 3 })
	var lastErr sql.NullString
	var attempts int
	testutil.Eventually(t, 10*time.Second, "the failure recorded", func() bool {
		err := e.pool.QueryRowContext(ctx, `SELECT attempts, last_error FROM outbox WHERE routing_key = 'nowhere' AND published_at IS NULL`).Scan(&attempts, &lastErr)
		return err == nil && attempts >= 1
	})
	if !strings.Contains(lastErr.String, "unroutable") {
		t.Errorf("last_error %q", lastErr.String)
	}
}

// TestRelayHoldsBackFailingRows: a whole batch of rows that keep failing (unroutable, or with
// headers that do not decode) leads the outbox; the rows behind them are still published,
// and each failing row records its error and is held back before its next attempt.
func TestRelayHoldsBackFailingRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Outbox.BatchSize = 10
	// A failing row is held back for 2, 4, 8, ... poll intervals: with a second, a sixth
	// attempt would take a minute, however slowly the machine delivers the others (full
	// batches run back to back, whatever the interval).
	e.cfg.Outbox.PollInterval = configuration.Duration(time.Second)
	e.write(t, 10)
	if _, err := e.pool.Exec(`UPDATE outbox SET routing_key = 'nowhere' WHERE id < (SELECT max(id) FROM outbox)`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(`UPDATE outbox SET headers = '{"x-request-id": 7}' WHERE id = (SELECT max(id) FROM outbox)`); err != nil {
		t.Fatal(err)
	}
	e.write(t, 200)
	seen := e.count(t)
	e.startRelay(t, e.conn, nil)
	testutil.Eventually(t, 20*time.Second, "the 200 events behind the failing ones delivered", func() bool { d, _ := seen.snapshot(); return d == 200 })
	// A round's rows are marked published once the broker has confirmed them, after their
	// delivery may have been seen.
	testutil.Eventually(t, 30*time.Second, "the delivered events marked published", func() bool { return unpublished(t, e.pool) == 10 })

	rs, err := e.pool.Query(`SELECT routing_key, attempts, last_error, next_attempt_at > now() - interval '1 minute'
		FROM outbox WHERE published_at IS NULL ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	n := 0
	for rs.Next() {
		var key string
		var attempts int
		var lastErr sql.NullString
		var heldBack sql.NullBool
		if err := rs.Scan(&key, &attempts, &lastErr, &heldBack); err != nil {
			t.Fatal(err)
		}
		n++
		want := "unroutable"
		if key != "nowhere" {
			want = "headers"
		}
		if attempts < 1 || !strings.Contains(lastErr.String, want) || !heldBack.Bool {
			t.Errorf("failing row %d: attempts %d, last_error %q, held back %v; want an attempt, %q, held back", n, attempts, lastErr.String, heldBack, want)
		}
		// Held back, a row is tried a few times while the others go, not in every round.
		if attempts > 5 {
			t.Errorf("failing row %d tried %d times in a few seconds", n, attempts)
		}
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Errorf("%d rows unpublished, want the 10 failing ones", n)
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write(t, 3)
	if _, err := e.pool.Exec(`UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id = (SELECT min(id) FROM outbox)`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(`UPDATE outbox SET published_at = now() WHERE id = (SELECT max(id) FROM outbox)`); err != nil {
		t.Fatal(err)
	}
	e.cfg.Outbox.Retention = configuration.Duration(time.Hour)
	r := NewRelay(e.pool, bus.NewPublisher(e.conn), e.cfg.Outbox, testLogger())
	r.pruneOld(context.Background())
	var total, published int
	if err := e.pool.QueryRow(`SELECT count(*), count(published_at) FROM outbox`).Scan(&total, &published); err != nil {
		t.Fatal(err)
	}
	if total != 2 || published != 1 {
		t.Errorf("%d rows (%d published) left, want the recent published one and the unpublished one", total, published)
	}
	// A retention under a millisecond, which Go writes in µs or ns, is not a PostgreSQL
	// interval's syntax.
	if _, err := e.pool.Exec(`UPDATE outbox SET published_at = now() - interval '1 second' WHERE published_at IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
	e.cfg.Outbox.Retention = configuration.Duration(500 * time.Microsecond)
	NewRelay(e.pool, bus.NewPublisher(e.conn), e.cfg.Outbox, testLogger()).pruneOld(context.Background())
	if err := e.pool.QueryRow(`SELECT count(*), count(published_at) FROM outbox`).Scan(&total, &published); err != nil {
		t.Fatal(err)
	}
	if total != 1 || published != 0 {
		t.Errorf("retention 500µs: %d rows (%d published) left, want the unpublished one", total, published)
	}
}

// TestRelayPublishesWhilePruning: pruning runs beside the rounds, so that an event committed
// while a prune statement runs (for minutes, over a large backlog of old rows) is published
// at once.
func TestRelayPublishesWhilePruning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pruning, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.startRelay(t, e.conn, func(r *Relay) {
		r.beforePrune = func() {
			once.Do(func() {
				close(pruning)
				<-release
			})
		}
	})
	defer close(release)
	<-pruning
	e.write(t, 1)
	testutil.Eventually(t, 10*time.Second, "the event published while the relay prunes", func() bool {
		return unpublished(t, e.pool) == 0
	})
}

// TestRelayWokenAfterADatabaseOutage: after rounds that failed while the database was away,
// the relay waits a back-off of up to 10 s; a commit of its process once the database is
// back ends that wait, so that the commit's events are not held for the rest of it.
func TestRelayWokenAfterADatabaseOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy := testutil.StartProxy(t, fmt.Sprintf("%s:%d", e.cfg.Database.Host, e.cfg.Database.Port))
	viaProxy := e.cfg.Database
	viaProxy.Host, viaProxy.Port = "127.0.0.1", proxy.Port()
	e.cfg.Outbox.PollInterval = configuration.Duration(200 * time.Millisecond)
	var log testutil.Buffer
	r := NewRelay(testenv.Pool(t, viaProxy), bus.NewPublisher(e.conn), e.cfg.Outbox, slog.New(slog.NewTextHandler(&log, nil)))
	r.Start()
	t.Cleanup(func() { _ = r.Stop(context.Background()) })

	proxy.Cut()
	// Back-offs of 0.2, 0.4, 0.8, 1.6 and 3.2 s, then 6.4.
	testutil.Eventually(t, 30*time.Second, "a back-off of 6.4 s", func() bool {
		return strings.Contains(log.String(), "retry_in=6.4s")
	})
	proxy.Restore()
	e.write(t, 1) // on the direct pool: the commit wakes the relay
	testutil.Eventually(t, 3*time.Second, "the event published before the back-off ends", func() bool {
		return unpublished(t, e.pool) == 0
	})
}

// takesNothing is a broker under a memory alarm: connected, every publish ErrBlocked.
type takesNothing struct{}

func (takesNothing) WaitReady(context.Context) error { return nil }
func (takesNothing) PublishBatch(_ context.Context, msgs []bus.Message) []error {
	errs := make([]error, len(msgs))
	for i := range errs {
		errs[i] = bus.ErrBlocked
	}
	return errs
}

// TestRelayBacksOffABrokerThatTakesNothing: a commit ends a back-off only after a round that
// the database failed. With the broker taking nothing, a busy process's commits leave the
// back-off to double as it does without them. Not parallel: its wakes reach every relay.
func TestRelayBacksOffABrokerThatTakesNothing(t *testing.T) {
	e := newEnv(t)
	e.write(t, 1)
	e.cfg.Outbox.PollInterval = configuration.Duration(100 * time.Millisecond)
	var log testutil.Buffer
	r := NewRelay(e.pool, takesNothing{}, e.cfg.Outbox, slog.New(slog.NewTextHandler(&log, nil)))
	r.Start()
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		Wake() // the commits of a process under load
		time.Sleep(5 * time.Millisecond)
	}
	// Rounds at 0, 0.1, 0.3, 0.7, 1.5 and 3.1 s: back-offs of 0.1, 0.2, 0.4, 0.8 and 1.6 s.
	if n := strings.Count(log.String(), "outbox relay round failed"); n > 8 {
		t.Errorf("%d failed rounds in 3 s with the broker taking nothing; a back-off doubling from 0.1 s allows 6", n)
	}
}

// TestRelayStopEndsAPruneQuietly: a relay stopped while a prune statement waits ends it, as
// part of an orderly stop, without a warning.
func TestRelayStopEndsAPruneQuietly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The prune's DELETE waits for this lock; the rounds' claims do not.
	tx, err := e.pool.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.Exec(`LOCK TABLE outbox IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	var log testutil.Buffer
	r := NewRelay(e.pool, bus.NewPublisher(e.conn), e.cfg.Outbox, slog.New(slog.NewTextHandler(&log, nil)))
	r.Start()
	testutil.Eventually(t, 10*time.Second, "the prune statement waiting", func() bool {
		var n int
		if err := e.pool.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM outbox%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "prune outbox") {
		t.Errorf("an orderly stop logged: %s", log.String())
	}
}

// TestCommitWakesRelays: a transaction that wrote events wakes the relays of the process when
// it commits, and only then; a stopped relay is no longer woken. Not parallel, so that no
// other test's commit wakes the relays meanwhile.
func TestCommitWakesRelays(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ch := make(chan struct{}, 1)
	unsubscribe := subscribe(ch)
	defer unsubscribe()

	_ = db.WithTx(ctx, e.client, func(tx *ent.Tx) error {
		if _, err := Write(ctx, tx, events.SourceAPI, completed(1), nil); err != nil {
			t.Fatal(err)
		}
		if len(ch) != 0 {
			t.Error("woken before the commit")
		}
		return errors.New("roll back")
	})
	if len(ch) != 0 {
		t.Error("a rolled-back write woke the relays")
	}
	err := db.WithTx(ctx, e.client, func(tx *ent.Tx) error {
		_, err := WriteBatch(ctx, tx, events.SourceAPI, []events.Event{completed(2), completed(3)}, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 1 {
		t.Error("a committed write did not wake the relays")
	}

	r := e.startRelay(t, e.conn, nil)
	relays.Lock()
	_, running := relays.wake[r.wake]
	relays.Unlock()
	if !running {
		t.Error("a started relay is not woken by commits")
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	relays.Lock()
	_, running = relays.wake[r.wake]
	relays.Unlock()
	if running {
		t.Error("a stopped relay is still woken by commits")
	}
}

// TestRelayStopPastItsDeadlineEndsTheRound: a relay whose round waits for a broker that
// stopped answering ends that round when Stop's deadline passes, instead of holding its
// claimed rows until publishTimeout; the rows stay unpublished for the next relay.
func TestRelayStopPastItsDeadlineEndsTheRound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.cfg.RabbitMQ
	proxy := testutil.StartProxy(t, fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	cfg.Port = proxy.Port()
	conn := e.newConnTo(t, cfg, cfg.Exchange+".silent")
	r := NewRelay(e.pool, bus.NewPublisher(conn), e.cfg.Outbox, testLogger())
	r.Start()

	proxy.Silence()
	e.write(t, 1)
	testutil.Eventually(t, 30*time.Second, "the relay's round to hold its claim", func() bool {
		var n int
		if err := e.pool.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	stop, cancelStop := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelStop()
	if err := r.Stop(stop); err == nil {
		t.Fatal("Stop past its deadline reported no error")
	}
	select {
	case <-r.ended():
	case <-time.After(2 * time.Second):
		t.Fatalf("the round still ran 2s after Stop's deadline (publishTimeout is %v)", publishTimeout)
	}
	if n := unpublished(t, e.pool); n != 1 {
		t.Errorf("unpublished rows = %d, want the 1 written", n)
	}
}

// TestRelayStopPublishesWhatWasJustWritten: a relay stopped right after a commit of its
// process publishes that commit's events before it stops: a process stops its consumers and
// requests before its relay so that the relay publishes what they wrote while draining.
func TestRelayStopPublishesWhatWasJustWritten(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Outbox.PollInterval = configuration.Duration(time.Hour)
	r := e.startRelay(t, e.conn, nil)
	e.write(t, 1)
	testutil.Eventually(t, 10*time.Second, "the first event to be published", func() bool { return unpublished(t, e.pool) == 0 })

	e.write(t, 3) // the last transactions of a draining handler
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if n := unpublished(t, e.pool); n != 0 {
		t.Errorf("unpublished rows after Stop = %d, want 0", n)
	}
}

// TestRelayStopLeavesABacklogToOthers: a relay stopped while a large backlog waits (after a
// broker outage, or a sweep) publishes first what was written last, its own process's last
// commits, and leaves the rest to the other relays once half of the time left to it has
// passed, instead of running out the stop deadline on rows that other processes wrote.
func TestRelayStopLeavesABacklogToOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Outbox.PollInterval = configuration.Duration(time.Hour)
	e.write(t, 1)
	if _, err := e.pool.Exec(`INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload, headers)
		SELECT now(), gen_random_uuid(), o.event_type, o.routing_key, o.payload, o.headers
		FROM outbox o, generate_series(1, 100000)`); err != nil {
		t.Fatal(err)
	}
	r := e.startRelay(t, e.conn, nil)
	last := e.write(t, 1)[0]

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Fatalf("stop with a backlog: %v", err)
	}
	var published bool
	if err := e.pool.QueryRow(`SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1`, last).Scan(&published); err != nil {
		t.Fatal(err)
	}
	if !published {
		t.Error("the event written last is not published")
	}
	if n := unpublished(t, e.pool); n == 0 {
		t.Error("the whole backlog was published: it was too small to test the stop")
	}
}

// TestRelayLeavesAConnectionThatStopsAnswering: after a failover that leaves the relay's
// connections to a database that went away without closing them, the relay gives up the
// round waiting on one, and publishes through a new connection, instead of waiting until TCP
// gives up (up to a quarter of an hour).
func TestRelayLeavesAConnectionThatStopsAnswering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy := testutil.StartProxy(t, fmt.Sprintf("%s:%d", e.cfg.Database.Host, e.cfg.Database.Port))
	viaProxy := e.cfg.Database
	viaProxy.Host, viaProxy.Port, viaProxy.MaxConns = "127.0.0.1", proxy.Port(), 2
	r := NewRelay(testenv.Pool(t, viaProxy), bus.NewPublisher(e.conn), e.cfg.Outbox, testLogger())
	r.roundTimeout = time.Second // publishTimeout and 20 s outside tests
	r.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = r.Stop(ctx) // past its deadline, it cancels a round that still waits
	})
	e.write(t, 1)
	testutil.Eventually(t, 10*time.Second, "the first event published", func() bool { return unpublished(t, e.pool) == 0 })

	proxy.Strand()
	e.write(t, 5)
	testutil.Eventually(t, 15*time.Second, "the events written after the failover published", func() bool {
		return unpublished(t, e.pool) == 0
	})
}
