package api

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/events"
	"orderflow/internal/group/grouptest"
	"orderflow/internal/testutil"
	"orderflow/platform/outbox"
)

// job is an order of userID placed by callerID, ready for the intake.
func (e *env) job(ctx context.Context, callerID, userID int, items ...domain.Item) *orderJob {
	e.t.Helper()
	now := e.h.now().Truncate(time.Microsecond)
	ev, err := outbox.NewEnvelopeRow(ctx, now, events.SourceAPI, events.TypeOrderCreated, events.RoutingKeyOrderCreated, actorHeaders(callerID))
	if err != nil {
		e.t.Fatal(err)
	}
	in := orderInput{callerID: callerID, userID: userID, items: items, ids: productIDs(items), now: now, ev: ev}
	return &orderJob{ctx: ctx, orderInput: in, done: make(chan struct{})}
}

// newQueueEnv is an API with a customer and a product with 10 in stock, and an intake of
// its own with one writer.
func newQueueEnv(t *testing.T) (e *env, cust, product int, in *intake) {
	e = newEnv(t)
	_, cust = e.customer()
	return e, cust, e.product("1.00", 10), newIntake(e.db, e.h.log, 1, 8)
}

// hold keeps the intake's writer busy until release is called: orders stored meanwhile
// wait in its queue, as requests do behind a slow transaction.
func (in *intake) hold() (release func()) {
	blocker := &orderJob{done: make(chan struct{})}
	return grouptest.Hold(in.groups, blocker, blocker.done, func(group []*orderJob) {
		for _, j := range group {
			close(j.done)
		}
	})
}

// stored is what intake.store returned.
type stored struct {
	order *oas.Order
	err   error
}

// storeQueued stores each job from a request of its own, in turn once the one before waits
// in the queue, and returns their results' channels.
func (in *intake) storeQueued(t *testing.T, jobs ...*orderJob) []chan stored {
	t.Helper()
	var out []chan stored
	for _, j := range jobs {
		c := make(chan stored, 1)
		go func() {
			o, err := in.store(j)
			c <- stored{o, err}
		}()
		out = append(out, c)
		testutil.Eventually(t, 5*time.Second, "the order to wait in the queue", func() bool { return in.groups.Waiting() == len(out) })
	}
	return out
}

// TestIntakeStoresAGroupInOneTransaction stores four orders as one group: those that can be
// placed are, in one transaction, including two for the same products; the one without
// enough stock stores nothing and does not keep the next order for its product from
// being placed.
func TestIntakeStoresAGroupInOneTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, cust := e.customer()
	a, b, c := e.product("1.00", 5), e.product("2.00", 1), e.product("3.00", 5)

	j1 := e.job(ctx, cust, cust, domain.Item{ProductID: c, Quantity: 1}, domain.Item{ProductID: a, Quantity: 1})
	j2 := e.job(ctx, cust, cust, domain.Item{ProductID: b, Quantity: 2})
	j3 := e.job(ctx, e.adminID, cust, domain.Item{ProductID: a, Quantity: 1}, domain.Item{ProductID: c, Quantity: 2})
	j4 := e.job(ctx, cust, cust, domain.Item{ProductID: b, Quantity: 1})
	group := []*orderJob{j1, j2, j3, j4}
	e.h.intake.storeGroup(group)

	for i, j := range group {
		select {
		case <-j.done:
		default:
			t.Fatalf("order %d not answered", i+1)
		}
		if j.err != nil || j.alone {
			t.Fatalf("order %d: error %v, alone %v", i+1, j.err, j.alone)
		}
	}
	if j2.order != nil {
		t.Errorf("an order beyond the stock was stored: %+v", j2.order)
	}
	var ids []int
	for i, j := range []*orderJob{j1, j3, j4} {
		if j.order == nil {
			t.Fatalf("order %d was not stored", []int{1, 3, 4}[i])
		}
		ids = append(ids, j.order.ID)
	}
	if got := j3.order.Items; len(got) != 2 || got[0].ProductId != a || got[1].ProductId != c || got[1].Quantity != 2 ||
		!moneyEq(j3.order.Total, "7.00") || j3.order.UserId != cust {
		t.Errorf("order 3 as stored: %+v", j3.order)
	}
	if e.stock(a) != 3 || e.stock(b) != 0 || e.stock(c) != 2 {
		t.Errorf("stock left %d, %d, %d; want 3, 0, 2", e.stock(a), e.stock(b), e.stock(c))
	}
	var orders, created, transactions int
	if err := e.db.QueryRow(`SELECT count(*), count(DISTINCT xmin::text) FROM orders WHERE id = ANY($1)`, ids).
		Scan(&orders, &transactions); err != nil {
		t.Fatal(err)
	}
	if err := e.db.QueryRow(`SELECT count(*) FROM outbox WHERE event_type = $1 AND (payload->'data'->>'orderId')::int = ANY($2)`,
		events.TypeOrderCreated, ids).Scan(&created); err != nil {
		t.Fatal(err)
	}
	if orders != 3 || transactions != 1 || created != 3 {
		t.Errorf("%d orders in %d transactions with %d OrderCreated rows; want 3 in 1 with 3", orders, transactions, created)
	}
}

// TestIntakeCountsStoredOrders checks orderflow_order_intake_group_orders: one observation
// per transaction that stored orders, of the orders it stored, and none for a transaction
// that stored none, whether it held one order or several.
func TestIntakeCountsStoredOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, cust := e.customer()
	a, b := e.product("1.00", 5), e.product("2.00", 1)
	in := newIntake(e.db, e.h.log, 1, 8)
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "intake_group_orders", Buckets: []float64{1, 2, 4}})
	in.stored = hist
	want := func(step string, count uint64, sum float64) {
		t.Helper()
		var m dto.Metric
		if err := hist.Write(&m); err != nil {
			t.Fatal(err)
		}
		if h := m.GetHistogram(); h.GetSampleCount() != count || h.GetSampleSum() != sum {
			t.Errorf("after %s: %d observations summing to %g, want %d summing to %g",
				step, h.GetSampleCount(), h.GetSampleSum(), count, sum)
		}
	}

	// The second order asks for more than there is, so the group is stored order by order.
	group := []*orderJob{
		e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 1}),
		e.job(ctx, cust, cust, domain.Item{ProductID: b, Quantity: 2}),
		e.job(ctx, cust, cust, domain.Item{ProductID: b, Quantity: 1}),
	}
	in.storeGroup(group)
	if group[0].order == nil || group[1].order != nil || group[2].order == nil {
		t.Fatalf("stored %v, %v, %v; want the first and the last", group[0].order, group[1].order, group[2].order)
	}
	want("a group that stored two of three", 1, 2)

	in.storeGroup([]*orderJob{e.job(ctx, cust, cust, domain.Item{ProductID: b, Quantity: 1})})
	want("one order that could not be placed", 1, 2)

	in.storeGroup([]*orderJob{
		e.job(ctx, cust, cust, domain.Item{ProductID: b, Quantity: 1}),
		e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 5}),
	})
	want("a group of which none could be placed", 1, 2)

	in.storeGroup([]*orderJob{e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 1})})
	want("one order stored", 2, 3)
}

// onConn runs f on one of e's connections.
func (e *env) onConn(f func(c *pgx.Conn) error) error {
	e.t.Helper()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error { return f(driverConn.(*stdlib.Conn).Conn()) })
}

// together runs insertTogether for group on one of e's connections.
func (e *env) together(group []*orderJob) (stored bool, err error) {
	e.t.Helper()
	err = e.onConn(func(c *pgx.Conn) error {
		stored, err = insertTogether(ctx, c, group)
		return err
	})
	return stored, err
}

// TestIntakeStoresPlaceableOrdersInOneStatement stores three orders that share products and
// together take all of their stock with GroupStatement: each is stored as OrderStatement
// would store it, with ids and events in the group's order. A group with one order that
// cannot be placed stores nothing that way, and the intake then places the others in turn.
func TestIntakeStoresPlaceableOrdersInOneStatement(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, cust := e.customer()
	a, b := e.product("1.00", 5), e.product("2.50", 3)

	group := []*orderJob{
		e.job(ctx, cust, cust, domain.Item{ProductID: b, Quantity: 1}, domain.Item{ProductID: a, Quantity: 2}),
		e.job(ctx, e.adminID, cust, domain.Item{ProductID: b, Quantity: 2}),
		e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 3}),
	}
	if stored, err := e.together(group); !stored || err != nil {
		t.Fatalf("stored %v, %v; want the group stored", stored, err)
	}
	if e.stock(a) != 0 || e.stock(b) != 0 {
		t.Errorf("stock left %d and %d, want 0 and 0", e.stock(a), e.stock(b))
	}
	wantTotals := []string{"4.50", "5.00", "3.00"}
	for i, j := range group {
		got, err := loadOrder(ctx, e.db, j.order.ID)
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := json.Marshal(got)
		answered, _ := json.Marshal(j.order)
		if string(stored) != string(answered) || !moneyEq(got.Total, wantTotals[i]) || len(got.Items) != len(j.items) {
			t.Errorf("order %d: stored\n%s\nanswered\n%s", i+1, stored, answered)
		}
		if i > 0 && j.order.ID <= group[i-1].order.ID {
			t.Errorf("order %d has id %d after %d", i+1, j.order.ID, group[i-1].order.ID)
		}

		var (
			payload     []byte
			sameHeaders bool
			headers     any // SQL NULL for none
		)
		if j.ev.Headers != nil {
			headers = string(j.ev.Headers)
		}
		if err := e.db.QueryRow(`SELECT payload, headers IS NOT DISTINCT FROM $2::jsonb FROM outbox WHERE event_id = $1`,
			j.ev.EventID, headers).Scan(&payload, &sameHeaders); err != nil {
			t.Fatalf("order %d's event: %v", i+1, err)
		}
		if !sameHeaders {
			t.Errorf("order %d's event has other headers than %s", i+1, j.ev.Headers)
		}
		env, decoded, err := events.Decode(payload)
		if err != nil {
			t.Fatal(err)
		}
		ev, ok := decoded.(events.OrderCreated)
		if !ok || env.ID != j.ev.EventID.String() || ev.OrderID != j.order.ID || ev.UserID != cust ||
			!ev.Total.Equal(decimalOf(t, wantTotals[i])) || len(ev.Items) != len(j.items) || !ev.CreatedAt.Equal(j.now) {
			t.Errorf("order %d's event %+v: %+v", i+1, env, decoded)
		}
		for n, it := range ev.Items {
			if it.ProductID != j.items[n].ProductID || it.Quantity != j.items[n].Quantity {
				t.Errorf("order %d's event item %d is %+v, want %+v", i+1, n, it, j.items[n])
			}
		}
	}
	rows, err := e.db.Query(`SELECT (payload->'data'->>'orderId')::int FROM outbox WHERE event_id = ANY($1) ORDER BY id`,
		[]string{group[0].ev.EventID.String(), group[1].ev.EventID.String(), group[2].ev.EventID.String()})
	if err != nil {
		t.Fatal(err)
	}
	outboxOrder := testutil.Column[int](t, rows)
	if want := []int{group[0].order.ID, group[1].order.ID, group[2].order.ID}; fmt.Sprint(outboxOrder) != fmt.Sprint(want) {
		t.Errorf("events written for orders %v, want %v", outboxOrder, want)
	}

	// Each order of the next group fits in the stock alone, but not both.
	c := e.product("1.00", 5)
	first := e.job(ctx, cust, cust, domain.Item{ProductID: c, Quantity: 3})
	second := e.job(ctx, cust, cust, domain.Item{ProductID: c, Quantity: 3})
	third := e.job(ctx, cust, cust, domain.Item{ProductID: c, Quantity: 2})
	if stored, err := e.together([]*orderJob{first, second, third}); stored || err != nil {
		t.Fatalf("stored %v, %v; want nothing stored", stored, err)
	}
	if e.stock(c) != 5 || first.order != nil {
		t.Fatalf("stock left %d, order %+v; want nothing stored", e.stock(c), first.order)
	}
	e.h.intake.storeGroup([]*orderJob{first, second, third})
	if first.err != nil || second.err != nil || third.err != nil {
		t.Fatalf("errors %v, %v, %v", first.err, second.err, third.err)
	}
	if first.order == nil || second.order != nil || third.order == nil || e.stock(c) != 0 {
		t.Errorf("stored %v, %v, %v with %d left; want the first and the third, none left",
			first.order != nil, second.order != nil, third.order != nil, e.stock(c))
	}
}

// TestIntakeFailedGroupStoresEachOrderAlone queues three orders, one of which makes
// PostgreSQL fail (its event headers are not JSON): their group fails whole, and each
// request then stores its order by itself, so that only the broken one fails.
func TestIntakeFailedGroupStoresEachOrderAlone(t *testing.T) {
	t.Parallel()
	e, cust, a, in := newQueueEnv(t)
	good := e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 1})
	bad := e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 2})
	bad.ev.Headers = []byte("{not json")
	third := e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 3})
	release := in.hold()
	results := in.storeQueued(t, good, bad, third)
	release()

	for i, want := range []bool{true, false, true} {
		r := <-results[i]
		if stored := r.err == nil && r.order != nil; stored != want {
			t.Errorf("order %d: %+v, %v; stored %v, want %v", i+1, r.order, r.err, stored, want)
		}
	}
	if !good.alone || !bad.alone || !third.alone {
		t.Errorf("after their group failed, stored alone: %v, %v, %v; want all", good.alone, bad.alone, third.alone)
	}
	if e.stock(a) != 6 {
		t.Errorf("stock left %d, want 6: the two good orders", e.stock(a))
	}
}

// TestIntakeAnswersEndedRequests: an order whose request ended while it waited is answered
// with the request's error and not stored.
func TestIntakeAnswersEndedRequests(t *testing.T) {
	t.Parallel()
	e, cust, a, in := newQueueEnv(t)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	gone := e.job(ended, cust, cust, domain.Item{ProductID: a, Quantity: 1})
	waiting := e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 2})
	release := in.hold()
	results := in.storeQueued(t, gone, waiting)
	release()

	if r := <-results[0]; !errors.Is(r.err, context.Canceled) || r.order != nil {
		t.Errorf("the ended request's order: %+v, %v", r.order, r.err)
	}
	if r := <-results[1]; r.err != nil || r.order == nil {
		t.Fatalf("the waiting order: %+v, %v", r.order, r.err)
	}
	if e.stock(a) != 8 {
		t.Errorf("stock left %d, want 8", e.stock(a))
	}
}

// TestIntakeSendsNoOrderWithTooLittleTimeLeft: an order whose request has spent nearly all
// its time in the queue is answered before anything of it is sent, as not stored (a 503
// that may be retried), rather than sent to be cut off in flight with its outcome unknown.
func TestIntakeSendsNoOrderWithTooLittleTimeLeft(t *testing.T) {
	t.Parallel()
	e, cust, a, in := newQueueEnv(t)
	// A deadline that does not end the context: however late the writer takes the group,
	// the order is refused for its time left, not for a request that ended.
	short := deadlineOnly{Context: ctx, deadline: time.Now().Add(5 * time.Second)}
	late := e.job(short, cust, cust, domain.Item{ProductID: a, Quantity: 1})
	timely := e.job(ctx, cust, cust, domain.Item{ProductID: a, Quantity: 2})
	release := in.hold()
	results := in.storeQueued(t, late, timely)
	time.Sleep(time.Until(short.deadline) - 400*time.Millisecond) // less than its margin of 500 ms left
	release()

	r := <-results[0]
	if !errors.Is(r.err, errNotSent) || !errors.Is(r.err, context.DeadlineExceeded) || errors.Is(r.err, errOutcomeUnknown) ||
		!strings.Contains(r.err.Error(), "too little of the request's time left") || r.order != nil {
		t.Errorf("the order with too little time left: %+v, %v; want it not sent, for too little time", r.order, r.err)
	}
	if r := <-results[1]; r.err != nil || r.order == nil {
		t.Fatalf("the order with time left: %+v, %v", r.order, r.err)
	}
	if e.stock(a) != 8 {
		t.Errorf("stock left %d, want 8", e.stock(a))
	}
}

// deadlineOnly is a context with a deadline that never ends it.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.deadline, true }

// TestIntakeGroupWithoutAConnectionFailsWhole: a group that gets no connection before its
// deadline stored nothing, and each of its orders is answered so, instead of each waiting
// for a connection again by itself.
func TestIntakeGroupWithoutAConnectionFailsWhole(t *testing.T) {
	t.Parallel()
	e, cust, a, in := newQueueEnv(t)
	e.db.SetMaxOpenConns(1)
	held, err := e.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	jobs := []*orderJob{
		e.job(short, cust, cust, domain.Item{ProductID: a, Quantity: 1}),
		e.job(short, cust, cust, domain.Item{ProductID: a, Quantity: 2}),
	}
	for _, j := range jobs {
		j.queued = time.Now()
	}
	in.storeGroup(jobs)
	for i, j := range jobs {
		if !errors.Is(j.err, errNotSent) || j.alone || j.order != nil {
			t.Errorf("order %d: %+v, %v, alone %v; want it not sent, answered with its group", i+1, j.order, j.err, j.alone)
		}
	}
}

// TestIntakeOrderCutOffInFlightIsOfUnknownOutcome: an order whose statements were sent and
// got no answer before its deadline may have been stored, and is answered so: not with the
// deadline alone, which its request would answer as "try again".
func TestIntakeOrderCutOffInFlightIsOfUnknownOutcome(t *testing.T) {
	t.Parallel()
	e, cust, a, in := newQueueEnv(t)
	locker, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Rollback()
	if _, err := locker.ExecContext(ctx, `SELECT FROM products WHERE id = $1 FOR UPDATE`, a); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	o, err := in.store(e.job(short, cust, cust, domain.Item{ProductID: a, Quantity: 1}))
	if !errors.Is(err, errOutcomeUnknown) || o != nil {
		t.Fatalf("an order cut off while its statement waited: %+v, %v; want errOutcomeUnknown", o, err)
	}
	p := e.h.NewError(ctx, err)
	if p.StatusCode != http.StatusServiceUnavailable || !strings.Contains(p.Response.Detail.Value, "it may have been") {
		t.Errorf("answered %d %q", p.StatusCode, p.Response.Detail.Value)
	}
}

// TestIntakeGroupsNeverWaitForEachOther stores groups concurrently whose orders name the
// same products in opposite orders, as two API processes could: every group commits,
// none is chosen as a deadlock's victim.
func TestIntakeGroupsNeverWaitForEachOther(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, cust := e.customer()
	a, b := e.product("1.00", 1000), e.product("1.00", 1000)

	in := newIntake(e.db, e.h.log, 4, 8)
	const writers, groups = 4, 25
	errs := make(chan error, writers*groups)
	jobs := make(chan []*orderJob, writers*groups)
	for w := range writers {
		for range groups {
			first, second := a, b
			if w%2 == 1 {
				first, second = b, a
			}
			jobs <- []*orderJob{
				e.job(ctx, cust, cust, domain.Item{ProductID: first, Quantity: 1}),
				e.job(ctx, cust, cust, domain.Item{ProductID: second, Quantity: 1}),
			}
		}
	}
	close(jobs)
	done := make(chan struct{})
	for range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for group := range jobs {
				errs <- in.insertGroup(ctx, group)
			}
		}()
	}
	for range writers {
		<-done
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a group failed: %v", err)
		}
	}
	if e.stock(a) != 1000-writers*groups || e.stock(b) != 1000-writers*groups {
		t.Errorf("stock left %d and %d, want %d", e.stock(a), e.stock(b), 1000-writers*groups)
	}
}

// TestStoredNothing: only a failure PostgreSQL reported, or one before the group was sent,
// lets the group's orders be stored again one by one.
func TestStoredNothing(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("insert orders: %w", &pgconn.PgError{Severity: "ERROR", Code: "22P02"}), true},
		// The server ended the session: the commit may have been written first.
		{fmt.Errorf("insert orders: %w", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}), false},
		{fmt.Errorf("insert orders: %w: %w", errNotSent, sql.ErrConnDone), true},
		{fmt.Errorf("insert orders: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("insert orders: %w", io.ErrUnexpectedEOF), false},
		{fmt.Errorf("insert orders: %w", unsent{}), true},
	} {
		if got := storedNothing(tc.err); got != tc.want {
			t.Errorf("storedNothing(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// unsent is an error of pgx's that says nothing was sent (pgconn.SafeToRetry), as when a
// batch begins on a context that has already ended, or a write to a dead connection fails.
type unsent struct{}

func (unsent) Error() string     { return "not sent" }
func (unsent) SafeToRetry() bool { return true }

// TestSendMargin: a tenth of the time a request had when its order joined the queue, at most
// a second.
func TestSendMargin(t *testing.T) {
	for budget, want := range map[time.Duration]time.Duration{
		time.Second:      100 * time.Millisecond,
		5 * time.Second:  500 * time.Millisecond,
		10 * time.Second: time.Second,
		time.Minute:      time.Second,
	} {
		if got := sendMargin(budget); got != want {
			t.Errorf("sendMargin(%s) = %s, want %s", budget, got, want)
		}
	}
}

// TestGroupDeadline: a group's statements run until its last request's deadline, but no
// later than answerGrace after its first's.
func TestGroupDeadline(t *testing.T) {
	now := time.Now()
	at := func(d time.Duration) context.Context {
		c, cancel := context.WithDeadline(ctx, now.Add(d))
		t.Cleanup(cancel)
		return c
	}
	for _, c := range []struct {
		name string
		ctxs []context.Context
		want time.Time
	}{
		{"close deadlines: the last", []context.Context{at(time.Hour + time.Second), context.Background(), at(time.Hour)}, now.Add(time.Hour + time.Second)},
		{"far apart: the first's and answerGrace", []context.Context{at(2 * time.Hour), at(time.Hour)}, now.Add(time.Hour + answerGrace)},
	} {
		var group []*orderJob
		for _, x := range c.ctxs {
			group = append(group, &orderJob{ctx: x})
		}
		gctx, cancel := groupDeadline(group)
		if got, _ := gctx.Deadline(); !got.Equal(c.want) {
			t.Errorf("%s: deadline %v, want %v", c.name, got, c.want)
		}
		cancel()
	}
}

// stalledGroup stores, in one group, an order with 1.5 s left and one with 20 s, while a
// product of the first is locked by another transaction, and returns their results' channels
// the first one's deadline, and the function that releases the lock.
func stalledGroup(t *testing.T) (results []chan stored, deadline time.Time, unlock func()) {
	e, cust, a, in := newQueueEnv(t)
	b := e.product("1.00", 10)
	locker, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock = func() { _ = locker.Rollback() }
	t.Cleanup(unlock)
	if _, err := locker.ExecContext(ctx, `SELECT FROM products WHERE id = $1 FOR UPDATE`, a); err != nil {
		t.Fatal(err)
	}
	early, cancelEarly := context.WithTimeout(ctx, 1500*time.Millisecond)
	t.Cleanup(cancelEarly)
	late, cancelLate := context.WithTimeout(ctx, 20*time.Second)
	t.Cleanup(cancelLate)
	release := in.hold()
	results = in.storeQueued(t,
		e.job(early, cust, cust, domain.Item{ProductID: a, Quantity: 1}),
		e.job(late, cust, cust, domain.Item{ProductID: b, Quantity: 1}))
	release()
	deadline, _ = early.Deadline()
	return results, deadline, unlock
}

// TestAnOrderIsAnsweredByItsDeadline: a request whose order shares a group with a later
// request is answered within answerGrace of its own deadline when the group's statements
// stall, not when the later request's deadline ends the group (after which the server would
// write no answer).
func TestAnOrderIsAnsweredByItsDeadline(t *testing.T) {
	t.Parallel()
	results, deadline, unlock := stalledGroup(t)
	r := <-results[0]
	// answerGrace's 3 s and 2 s to spare; not answerGrace itself, so that the bound does not
	// follow a grace grown past the server's write timeout.
	if late := time.Since(deadline); late > 5*time.Second {
		t.Errorf("the request with 1.5 s was answered %v after its deadline (order %v, %v)", late.Round(time.Millisecond), r.order != nil, r.err)
	}
	unlock()
	<-results[1]
}

// TestALateOrderOutlastsAnEarlyOnesDeadline: a group whose statements wait a little past its
// first request's deadline stores every order once the wait ends, rather than failing all of
// them with the one that had little time left.
func TestALateOrderOutlastsAnEarlyOnesDeadline(t *testing.T) {
	t.Parallel()
	results, deadline, unlock := stalledGroup(t)
	// Half a second past the first deadline, well within the group's grace, however long
	// the setup took.
	time.AfterFunc(time.Until(deadline)+500*time.Millisecond, unlock)
	for i, c := range results {
		if r := <-c; r.order == nil || r.err != nil {
			t.Errorf("order %d: %v, %v; want it stored once the lock was released", i, r.order != nil, r.err)
		}
	}
}

// TestAPanicInAGroupAnswersEveryOrder: a panic while a group is stored is not the writer's
// request's alone: every order of the group is answered with an error, and the intake takes
// orders again.
func TestAPanicInAGroupAnswersEveryOrder(t *testing.T) {
	t.Parallel()
	e, cust, product, in := newQueueEnv(t)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	gone := e.job(ended, cust, cust, domain.Item{ProductID: product, Quantity: 1})
	good := e.job(ctx, cust, cust, domain.Item{ProductID: product, Quantity: 1})
	broken := e.job(ctx, cust, cust, domain.Item{ProductID: product, Quantity: 1})
	broken.ctx = nil // answerEnded reads every order's context: a panic
	in.storeGroup([]*orderJob{gone, good, broken})
	if !errors.Is(gone.err, errNotSent) {
		t.Errorf("the order whose request had ended: %v, want it not sent", gone.err)
	}
	for i, j := range []*orderJob{gone, good, broken} {
		select {
		case <-j.done:
		default:
			t.Fatalf("order %d of the group not answered", i)
		}
	}
	for i, j := range []*orderJob{good, broken} {
		select {
		case <-j.done:
		default:
			t.Fatalf("order %d of the group not answered", i)
		}
		if j.err == nil || j.order != nil || j.alone {
			t.Errorf("order %d: order %v, alone %v, error %v; want the panic's error", i, j.order, j.alone, j.err)
		}
	}
	if o, err := in.store(e.job(ctx, cust, cust, domain.Item{ProductID: product, Quantity: 1})); o == nil || err != nil {
		t.Errorf("an order after the panic: %v, %v", o, err)
	}
}

// TestStockAddedWhileAnOrderWaitsIsSeen: an order that waits for a product's row while
// another transaction adds to its stock is placed against the stock that transaction left,
// with every one of its items reserved. A statement that locks its products itself judges
// its reservations against the rows as they were when it began, and could then reserve some
// products and store no order, losing their units.
func TestStockAddedWhileAnOrderWaitsIsSeen(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, custID := e.customer()
	for _, c := range []struct {
		name  string
		place func(a, b int) error
		// a and b: the units the orders take from each
		a, b int
	}{
		{"a lone order", func(a, b int) error {
			_, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(a, 1, b, 2)}, oas.CreateOrderParams{})
			return err
		}, 1, 2},
		{"an order with an Idempotency-Key", func(a, b int) error {
			_, err := cust.CreateOrder(ctx, &oas.OrderCreate{Items: items(a, 1, b, 2)},
				oas.CreateOrderParams{IdempotencyKey: oas.NewOptString("added-stock")})
			return err
		}, 1, 2},
		{"orders stored together", func(a, b int) error {
			group := []*orderJob{
				e.job(ctx, custID, custID, domain.Item{ProductID: a, Quantity: 1}, domain.Item{ProductID: b, Quantity: 1}),
				e.job(ctx, custID, custID, domain.Item{ProductID: b, Quantity: 1}),
			}
			if stored, err := e.together(group); !stored || err != nil {
				return fmt.Errorf("stored %v, %v; want the group stored", stored, err)
			}
			return nil
		}, 1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := e.product("1.00", 10), e.product("1.00", 0)
			// Another transaction adds 3 units of b (an order released, say), and commits
			// once the order waits for b's row.
			tx, err := e.db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.Exec(`UPDATE products SET stock = stock + 3 WHERE id = $1`, b); err != nil {
				t.Fatal(err)
			}
			placed := make(chan error, 1)
			go func() { placed <- c.place(a, b) }()
			testutil.Eventually(t, 10*time.Second, "the order waiting for the product's row", func() bool {
				var waiting int
				err := e.db.QueryRow(`SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
				return err == nil && waiting > 0
			})
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-placed; err != nil {
				t.Errorf("order: %v", err)
			}
			if got, want := e.stock(a), 10-c.a; got != want {
				t.Errorf("stock of a %d, want %d", got, want)
			}
			if got, want := e.stock(b), 3-c.b; got != want {
				t.Errorf("stock of b %d, want %d", got, want)
			}
		})
	}
}

// each runs insertEach for group on one of e's connections.
func (e *env) each(group []*orderJob) error {
	e.t.Helper()
	return e.onConn(func(c *pgx.Conn) error { return insertEach(ctx, c, group) })
}

// TestBothStatementsRefuseAlike: the rules of an order are written in OrderStatement and in
// GroupStatement, and explainRefusal says why. For every reason to refuse an order, each
// statement stores nothing (GroupStatement nothing of a group that holds it), and
// explainRefusal gives the reason; beside it, an order that can be placed is.
func TestBothStatementsRefuseAlike(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, cust := e.customer()
	_, other := e.customer()
	a := e.product("1.00", 10)
	dear := e.product("6000000000.00", 10)
	item := func(product, quantity int) domain.Item { return domain.Item{ProductID: product, Quantity: quantity} }
	tests := []struct {
		name string
		bad  func() *orderJob
		want func(t *testing.T, err error)
	}{
		{"the caller's token issued before a password change", func() *orderJob {
			j := e.job(ctx, cust, cust, item(a, 1))
			j.callerVersion++
			return j
		}, func(t *testing.T, err error) { wantIs(t, err, errTokenPasswordChanged) }},
		{"a customer ordering for another", func() *orderJob { return e.job(ctx, cust, other, item(a, 1)) },
			func(t *testing.T, err error) { wantRefusal(t, err, http.StatusForbidden, "") }},
		{"a user that does not exist", func() *orderJob { return e.job(ctx, e.adminID, 999999, item(a, 1)) },
			func(t *testing.T, err error) { wantRefusal(t, err, http.StatusBadRequest, "userId") }},
		{"a product that does not exist", func() *orderJob { return e.job(ctx, cust, cust, item(a, 1), item(999999, 1)) },
			func(t *testing.T, err error) { wantRefusal(t, err, http.StatusBadRequest, "items[1].productId") }},
		{"a total too large", func() *orderJob { return e.job(ctx, cust, cust, item(dear, 2)) },
			func(t *testing.T, err error) { wantRefusal(t, err, http.StatusBadRequest, "items") }},
		{"too little stock", func() *orderJob { return e.job(ctx, cust, cust, item(a, 11)) },
			func(t *testing.T, err error) { wantIs(t, err, ErrInsufficientStock) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := func() *orderJob { return e.job(ctx, cust, cust, item(a, 1)) }
			before := e.stock(a)

			if stored, err := e.together([]*orderJob{good(), tt.bad()}); stored || err != nil {
				t.Fatalf("GroupStatement: stored %v, %v; want nothing stored", stored, err)
			}
			bad := tt.bad()
			if err := e.each([]*orderJob{bad}); err != nil || bad.order != nil {
				t.Fatalf("OrderStatement: %+v, %v; want nothing stored", bad.order, err)
			}
			if got := e.stock(a); got != before {
				t.Fatalf("stock %d after the refusals, want %d", got, before)
			}
			tt.want(t, explainRefusal(ctx, e.db, bad.orderInput))

			placeable := good()
			if err := e.each([]*orderJob{placeable}); err != nil || placeable.order == nil {
				t.Fatalf("the order beside it: %+v, %v; want it stored", placeable.order, err)
			}
		})
	}
}

func wantIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("explainRefusal: %v, want %v", err, target)
	}
}

// wantRefusal fails unless err is a problem with status, naming field when one is given.
func wantRefusal(t *testing.T, err error, status int, field string) {
	t.Helper()
	var p *Problem
	if !errors.As(err, &p) || p.Status != status {
		t.Fatalf("explainRefusal: %v, want a %d problem", err, status)
	}
	if field == "" {
		return
	}
	for _, f := range p.Fields {
		if f.Field == field {
			return
		}
	}
	t.Errorf("explainRefusal: %+v does not name %s", p, field)
}

// TestOrdersDoNotTurnAProductsUpdatedAtBack: an order stamps its products with the time it
// was taken, which is earlier than a change of the product that committed while it waited
// in the intake; the product's updatedAt then stays that change's, by GroupStatement and by
// OrderStatement alike.
func TestOrdersDoNotTurnAProductsUpdatedAtBack(t *testing.T) {
	t.Parallel()
	e, cust, product, in := newQueueEnv(t)
	ctx := context.Background()
	updatedAt := func() time.Time {
		t.Helper()
		var at time.Time
		if err := e.db.QueryRow(`SELECT updated_at FROM products WHERE id = $1`, product).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	changed := updatedAt()
	taken := func(quantity int) *orderJob {
		j := e.job(ctx, cust, cust, domain.Item{ProductID: product, Quantity: quantity})
		j.now = changed.Add(-time.Hour)
		return j
	}
	// Two that can be placed, by GroupStatement.
	release := in.hold()
	results := in.storeQueued(t, taken(1), taken(1))
	release()
	for _, c := range results {
		if r := <-c; r.order == nil || r.err != nil {
			t.Fatalf("order of a group: %v, %v", r.order, r.err)
		}
	}
	if got := updatedAt(); !got.Equal(changed) {
		t.Errorf("updatedAt %v after orders taken an hour before %v", got, changed)
	}
	// Beside one that cannot be placed, by OrderStatement.
	release = in.hold()
	results = in.storeQueued(t, taken(1), taken(100))
	release()
	if r := <-results[0]; r.order == nil || r.err != nil {
		t.Fatalf("order beside a refused one: %v, %v", r.order, r.err)
	}
	if r := <-results[1]; r.order != nil || r.err != nil {
		t.Fatalf("order for more than the stock: %v, %v; want nothing stored", r.order, r.err)
	}
	if got := updatedAt(); !got.Equal(changed) {
		t.Errorf("updatedAt %v after an order taken an hour before %v", got, changed)
	}
	if got := e.stock(product); got != 7 {
		t.Errorf("stock %d, want 7", got)
	}
}
