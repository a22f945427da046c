package worker_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"orderflow/configuration"
	"orderflow/ent"
	"orderflow/ent/notification"
	"orderflow/ent/order"
	"orderflow/ent/outbox"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/db"
	pout "orderflow/platform/outbox"
	"orderflow/worker"
)

// logBuffer collects JSON log lines from concurrent goroutines.
type logBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	parsed []map[string]any // records of the complete lines read from buf so far
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the logged records whose message is msg.
func (b *logBuffer) lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	// Parse only what was written since the last call: tests poll this while thousands of
	// handlers log.
	for {
		line, err := b.buf.ReadBytes('\n')
		if err != nil {
			// An incomplete line stays for the next call.
			rest := append([]byte(nil), line...)
			b.buf.Reset()
			b.buf.Write(rest)
			break
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		b.parsed = append(b.parsed, rec)
	}
	var out []map[string]any
	for _, rec := range b.parsed {
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// emails counts the e-mail log lines per order id.
func (b *logBuffer) emails(t testing.TB) map[int]int {
	t.Helper()
	counts := map[int]int{}
	for _, rec := range b.lines(t, "email sent") {
		id, ok := rec["order_id"].(float64)
		if !ok {
			t.Fatalf("e-mail log line without a numeric orderId: %v", rec)
		}
		counts[int(id)]++
	}
	return counts
}

// newLogger returns a JSON debug logger writing to a fresh buffer.
func newLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// store is one test's database.
type store struct {
	cfg    configuration.Database
	client *ent.Client
}

// newStore opens a fresh, migrated database for t.
func newStore(t testing.TB) *store {
	t.Helper()
	cfg := testenv.Database(t)
	return openStore(t, cfg)
}

func openStore(t testing.TB, cfg configuration.Database) *store {
	t.Helper()
	return &store{cfg: cfg, client: db.NewClient(testenv.Pool(t, cfg))}
}

// newUser inserts a customer and returns its id.
func (s *store) newUser(t testing.TB, name string) *ent.User {
	t.Helper()
	u, err := s.client.User.Create().
		SetName(name).
		SetEmail(strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "." + uuid.NewString()[:8] + "@example.com").
		SetPasswordHash("x").
		Save(context.Background())
	if err != nil {
		t.Fatalf("insert user: %v", err)
	}
	return u
}

// newOrder inserts a pending order of one item (product 1, 99.99) for user, and returns the
// OrderCreated event the API would have written for it.
func (s *store) newOrder(t testing.TB, user *ent.User, quantity int) events.OrderCreated {
	t.Helper()
	ctx := context.Background()
	price := decimal.RequireFromString("99.99")
	total := price.Mul(decimal.NewFromInt(int64(quantity)))
	var created events.OrderCreated
	err := db.WithTx(ctx, s.client, func(tx *ent.Tx) error {
		o, err := tx.Order.Create().SetUserID(user.ID).SetTotal(total).Save(ctx)
		if err != nil {
			return err
		}
		if err := tx.OrderItem.Create().SetOrderID(o.ID).SetProductID(1).SetQuantity(quantity).SetPrice(price).Exec(ctx); err != nil {
			return err
		}
		created = events.OrderCreated{
			OrderID:   o.ID,
			UserID:    user.ID,
			Total:     events.NewMoney(total),
			Items:     []events.Item{{ProductID: 1, Quantity: quantity, Price: events.NewMoney(price)}},
			CreatedAt: o.CreatedAt,
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert order: %v", err)
	}
	return created
}

// newOrders inserts n pending orders and their OrderCreated outbox rows, as the API does.
func (s *store) newOrders(t testing.TB, n int) []int {
	t.Helper()
	ctx := context.Background()
	user := s.newUser(t, "Ada Lovelace")
	ids := make([]int, 0, n)
	price := decimal.RequireFromString("99.99")
	for range n {
		err := db.WithTx(ctx, s.client, func(tx *ent.Tx) error {
			o, err := tx.Order.Create().SetUserID(user.ID).SetTotal(price).Save(ctx)
			if err != nil {
				return err
			}
			if err := tx.OrderItem.Create().SetOrderID(o.ID).SetProductID(1).SetQuantity(1).SetPrice(price).Exec(ctx); err != nil {
				return err
			}
			_, err = pout.Write(ctx, tx, events.SourceAPI, events.OrderCreated{
				OrderID:   o.ID,
				UserID:    user.ID,
				Total:     events.NewMoney(price),
				Items:     []events.Item{{ProductID: 1, Quantity: 1, Price: events.NewMoney(price)}},
				CreatedAt: o.CreatedAt,
			}, nil)
			ids = append(ids, o.ID)
			return err
		})
		if err != nil {
			t.Fatalf("insert order with its event: %v", err)
		}
	}
	return ids
}

// completedOrder stores an order of one unit for a new customer named name, already
// completed, and returns it, its customer and the body of its OrderCompleted event.
func (s *store) completedOrder(t testing.TB, name string) (events.OrderCreated, *ent.User, []byte) {
	t.Helper()
	user := s.newUser(t, name)
	created := s.newOrder(t, user, 1)
	s.setStatus(t, created.OrderID, order.StatusCompleted)
	_, body := envelope(t, events.SourceWorker, events.OrderCompleted{
		OrderID: created.OrderID, UserID: user.ID, Total: created.Total, CompletedAt: time.Now(),
	})
	return created, user, body
}

// setStatus forces an order's status, as another process would have changed it.
func (s *store) setStatus(t testing.TB, orderID int, st order.Status) {
	t.Helper()
	if err := s.client.Order.UpdateOneID(orderID).SetStatus(st).Exec(context.Background()); err != nil {
		t.Fatalf("set status of order %d: %v", orderID, err)
	}
}

// movedByAdmin moves the order to processing as PUT /api/orders/{id} does.
func (s *store) movedByAdmin(t testing.TB, orderID int) {
	t.Helper()
	err := s.client.Order.UpdateOneID(orderID).SetStatus(order.StatusProcessing).SetProcessingByAdminAt(time.Now()).
		Exec(context.Background())
	if err != nil {
		t.Fatalf("move order %d to processing: %v", orderID, err)
	}
}

func (s *store) status(t testing.TB, orderID int) order.Status {
	t.Helper()
	o, err := s.client.Order.Get(context.Background(), orderID)
	if err != nil {
		t.Fatalf("read order %d: %v", orderID, err)
	}
	return o.Status
}

// completedEvents returns the OrderCompleted events in the outbox for orderID.
func (s *store) completedEvents(t testing.TB, orderID int) []events.OrderCompleted {
	t.Helper()
	rows, err := s.client.Outbox.Query().
		Where(outbox.EventType(events.TypeOrderCompleted)).
		All(context.Background())
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	var out []events.OrderCompleted
	for _, r := range rows {
		_, ev, err := events.Decode(r.Payload)
		if err != nil {
			t.Fatalf("outbox row %d does not decode: %v", r.ID, err)
		}
		if c := ev.(events.OrderCompleted); c.OrderID == orderID {
			out = append(out, c)
		}
	}
	return out
}

// notifications returns the notifications of orderID.
func (s *store) notifications(t testing.TB, orderID int) []*ent.Notification {
	t.Helper()
	ns, err := s.client.Notification.Query().
		Where(notification.OrderID(orderID)).
		All(context.Background())
	if err != nil {
		t.Fatalf("read notifications: %v", err)
	}
	return ns
}

// envelope wraps e as a message from source, with a fresh event id.
func envelope(t testing.TB, source string, e events.Event) (events.Envelope, []byte) {
	t.Helper()
	env, err := events.NewEnvelope(uuid.NewString(), source, time.Now(), e)
	if err != nil {
		t.Fatal(err)
	}
	body, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return env, body
}

// always returns a random source that always draws v.
func always(v float64) worker.RandomSource { return func(int) float64 { return v } }

// counted wraps r and counts its draws.
type counted struct {
	mu    sync.Mutex
	draws int
	r     worker.RandomSource
}

func (c *counted) draw(id int) float64 {
	c.mu.Lock()
	c.draws++
	c.mu.Unlock()
	return c.r(id)
}

func (c *counted) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draws
}

func mustEqual[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func describe(ns []*ent.Notification) string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "[%s sent=%v %q] ", n.EventType, n.IsEmailSent, n.Message)
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// unusedPort returns a local TCP port nothing listens on.
func unusedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// openUnchecked returns a client on cfg without checking that the database answers.
func openUnchecked(t testing.TB, cfg configuration.Database) *ent.Client {
	t.Helper()
	pool, err := sql.Open("pgx", cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	return db.NewClient(pool)
}

// newOrdersBulk inserts n pending orders and their OrderCreated outbox rows in one
// transaction, so that they are published together, and returns their ids.
func (s *store) newOrdersBulk(t testing.TB, n int) []int {
	t.Helper()
	ctx := context.Background()
	user := s.newUser(t, "Dennis Ritchie")
	price := decimal.RequireFromString("99.99")
	var ids []int
	err := db.WithTx(ctx, s.client, func(tx *ent.Tx) error {
		builders := make([]*ent.OrderCreate, n)
		for i := range builders {
			builders[i] = tx.Order.Create().SetUserID(user.ID).SetTotal(price)
		}
		orders, err := tx.Order.CreateBulk(builders...).Save(ctx)
		if err != nil {
			return err
		}
		evs := make([]events.Event, n)
		for i, o := range orders {
			evs[i] = events.OrderCreated{
				OrderID: o.ID, UserID: user.ID, Total: events.NewMoney(price), CreatedAt: o.CreatedAt,
				Items: []events.Item{{ProductID: 1, Quantity: 1, Price: events.NewMoney(price)}},
			}
		}
		_, err = pout.WriteBatch(ctx, tx, events.SourceAPI, evs, nil)
		for _, o := range orders {
			ids = append(ids, o.ID)
		}
		return err
	})
	if err != nil {
		t.Fatalf("insert %d orders: %v", n, err)
	}
	return ids
}

// failover is a worker whose pool reaches the test's database through a proxy that the test
// strands (testutil.Proxy.Strand): the connections the pool holds then stop answering for
// good, without being closed, while new ones reach the database at once.
type failover struct {
	proxy  *testutil.Proxy
	pool   *sql.DB
	worker *worker.Worker
	logs   *logBuffer
}

// newFailover returns a worker with opts on s's database through a proxy, each attempt of its
// database work bounded to a second. Its handlers run with ctx, which ends with the test, so
// that a handler still waiting on a stranded connection then returns.
func newFailover(t testing.TB, s *store, opts worker.Options) (f *failover, ctx context.Context) {
	t.Helper()
	px := testutil.StartProxy(t, net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)))
	viaProxy := s.cfg
	viaProxy.Host, viaProxy.Port = "127.0.0.1", px.Port()
	pool := testenv.Pool(t, viaProxy)
	log, logs := newLogger()
	w := worker.New(db.NewClient(pool), log, opts)
	w.SetAttemptTimeout(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // runs before the proxy's and the pool's clean-ups
	return &failover{proxy: px, pool: pool, worker: w, logs: logs}, ctx
}

// openIdle opens n connections in the pool at once and puts them back, idle, for the
// handlers to take.
func (f *failover) openIdle(t testing.TB, n int) {
	t.Helper()
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := f.pool.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.PingContext(context.Background()); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		c.Close()
	}
}

// waitAll waits for n results on errs, each nil, for at most timeout in all.
func waitAll(t testing.TB, errs <-chan error, n int, timeout time.Duration, what string) {
	t.Helper()
	deadline := time.After(timeout)
	for i := range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("%s: handler: %v", what, err)
			}
		case <-deadline:
			t.Fatalf("%s: %d of %d handlers still waiting after %s", what, n-i, n, timeout)
		}
	}
}
