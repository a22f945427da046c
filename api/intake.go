package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/internal/group"
	"orderflow/platform/db"
)

// intake stores new orders, and stores the orders that are waiting together in one
// transaction, so that PostgreSQL flushes its log once for all of them: when every one of
// them can be placed, GroupStatement, one statement and one round trip for all of them;
// otherwise, once that statement has stored nothing, each order's OrderStatement in one
// pipelined transaction (insertEach), a second round trip.
//
// The orders waiting together are written by one of their requests (group.Writer). One
// request writes at a time; more, up to orders.intakeConnections at once, only while a whole
// group (orders.intakeGroupSize orders) is waiting.
type intake struct {
	db     *sql.DB
	log    *slog.Logger
	groups *group.Writer[*orderJob]
	// stored observes the number of orders each transaction stored, when it stored any.
	stored prometheus.Observer
}

// orderJob is one order in the intake: its request's context, OrderStatement's input, and
// the result.
type orderJob struct {
	ctx context.Context
	orderInput

	queued time.Time     // when the order joined the intake's queue
	done   chan struct{} // closed once order and err are set
	order  *oas.Order
	err    error
	// alone is set when the job's group failed as a whole and stored nothing: the job's
	// request stores its order by itself, so that one order's error is its own.
	alone bool
}

// errNotSent marks a failure before anything reached PostgreSQL.
var errNotSent = errors.New("not sent to the database")

// errOutcomeUnknown marks an order whose statements reached PostgreSQL without an answer
// coming back: the time ran out, or the connection broke, after they were sent. The order may
// have been stored, and its commit may even complete later, so its request is not told to
// try again as if nothing had happened.
var errOutcomeUnknown = errors.New("the database did not confirm whether the order was stored")

func newIntake(db *sql.DB, log *slog.Logger, writers, maxGroup int) *intake {
	return &intake{db: db, log: log, groups: group.NewWriter[*orderJob](writers, maxGroup), stored: intakeGroupOrders}
}

// store stores job's order and returns it, or nil when OrderStatement stored nothing. An
// error after its statements were sent wraps errOutcomeUnknown.
func (in *intake) store(job *orderJob) (*oas.Order, error) {
	job.queued, job.done = time.Now(), make(chan struct{})
	in.groups.Write(job, job.done, in.storeGroup)
	o, err := job.order, job.err
	if job.alone {
		o, err = in.storeAlone(job)
	}
	if err != nil && !storedNothing(err) {
		return nil, fmt.Errorf("%w: %w", errOutcomeUnknown, err)
	}
	return o, err
}

// storeAlone stores job's order by itself.
func (in *intake) storeAlone(job *orderJob) (*oas.Order, error) {
	err := in.onConn(job.ctx, func(c *pgx.Conn) error {
		return insertEach(job.ctx, c, []*orderJob{job})
	})
	if err != nil {
		return nil, err
	}
	if job.order != nil {
		in.stored.Observe(1)
	}
	return job.order, nil
}

// onConn runs f on one of the pool's connections.
func (in *intake) onConn(ctx context.Context, f func(c *pgx.Conn) error) error {
	conn, err := in.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("insert orders: %w: %w", errNotSent, err)
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error { return f(driverConn.(*stdlib.Conn).Conn()) })
}

// answerEnded gives the orders of group whose request has ended while they waited, or has
// too little of its time left (sendMargin), their error, and returns the others, in a slice
// of their own. Nothing of theirs was sent: their requests may safely try again.
func answerEnded(group []*orderJob) []*orderJob {
	live := make([]*orderJob, 0, len(group))
	for _, j := range group {
		err := j.ctx.Err()
		if d, ok := j.ctx.Deadline(); ok && err == nil && time.Until(d) < sendMargin(d.Sub(j.queued)) {
			err = fmt.Errorf("too little of the request's time left: %w", context.DeadlineExceeded)
		}
		if err != nil {
			j.err = fmt.Errorf("insert orders: %w: %w", errNotSent, err)
			continue
		}
		live = append(live, j)
	}
	return live
}

// sendMargin is the time an order's request must have left for its statements to be sent:
// a tenth of the time it had when it joined the queue, at most a second. A group sent with
// less would likely be cut off by a deadline in flight, which leaves its orders' outcome
// unknown (errOutcomeUnknown); one that waited that long in the queue is answered before
// anything of it is sent.
func sendMargin(budget time.Duration) time.Duration { return min(time.Second, budget/10) }

// storeGroup stores the orders of group and answers them: one order by itself, several in
// one transaction. When the transaction fails and surely stored nothing because PostgreSQL
// reported the error, which rolls it back, each order is stored by its own request; when it
// never got a connection, every order gets the error. When the outcome
// is unknown (the connection broke, or the time ran out, after the commit may have been
// sent), every order of the group gets the error, as a single order would: storing them
// again could store them twice.
func (in *intake) storeGroup(all []*orderJob) {
	var group []*orderJob // the orders sent, answerEnded's
	defer func() {
		// A panic fails the whole group, whose transaction may have committed, and is not
		// left to the writer's request alone: every request of the group is answered.
		if v := recover(); v != nil {
			in.log.Error("storing orders panicked", "orders", len(all), "panic", v, "stack", string(debug.Stack()))
			for _, j := range all {
				// The orders answerEnded answered keep their answer: nothing of theirs was sent.
				if group == nil && j.err == nil || slices.Contains(group, j) {
					j.order, j.alone, j.err = nil, false, fmt.Errorf("store orders: panic: %v", v)
				}
			}
		}
		for _, j := range all {
			close(j.done)
		}
	}()
	group = answerEnded(all)
	if len(group) < 2 { // one order, or none whose request is still there
		for _, j := range group {
			j.order, j.err = in.storeAlone(j)
		}
		return
	}
	ctx, cancel := groupDeadline(group)
	defer cancel()
	err := in.insertGroup(ctx, group)
	switch {
	case err == nil:
		// Orders that could not be placed are answered with no order and stored nothing.
		n := 0
		for _, j := range group {
			if j.order != nil {
				n++
			}
		}
		if n > 0 {
			in.stored.Observe(float64(n))
		}
	case errors.Is(err, errNotSent):
		// No connection in time: storing each order by itself would wait for one again.
		for _, j := range group {
			j.order, j.err = nil, err
		}
	case storedNothing(err):
		in.log.Warn("storing orders together failed, each is stored by itself", "orders", len(group), "error", err)
		for _, j := range group {
			j.order, j.alone = nil, true
		}
	default:
		for _, j := range group {
			j.order, j.err = nil, err
		}
	}
}

// storedNothing tells whether a group's err means that none of it was stored: it failed
// before anything was sent (errNotSent), or as db.ChangedNothing says.
func storedNothing(err error) bool {
	return errors.Is(err, errNotSent) || db.ChangedNothing(err)
}

// answerGrace is how long after the first deadline of a group's requests its statements may
// still run: each of its requests waits for the whole group, and the server writes no answer
// later than 5 s after http.requestTimeout.
const answerGrace = 3 * time.Second

// groupDeadline returns a group's context: it ends at the last deadline of the group's
// requests, but no later than answerGrace after the first. A group that ran on to a much
// later deadline would answer the earlier requests too late to be written, even when it
// stored their orders; one cut at the first deadline would fail every order for the one that
// had little time left (answerEnded sends those with sendMargin).
func groupDeadline(group []*orderJob) (context.Context, context.CancelFunc) {
	ctx := context.WithoutCancel(group[0].ctx)
	var first, last time.Time
	for _, j := range group {
		d, ok := j.ctx.Deadline()
		if !ok {
			continue
		}
		if first.IsZero() || d.Before(first) {
			first = d
		}
		if d.After(last) {
			last = d
		}
	}
	if first.IsZero() {
		return context.WithCancel(ctx)
	}
	if end := first.Add(answerGrace); end.Before(last) {
		last = end
	}
	return context.WithDeadline(ctx, last)
}

// LockProducts locks products $1 in id order. It runs in a statement of its own, in the
// transaction and before the statement that reserves their stock (OrderStatement or
// GroupStatement), which then begins with the locks held and sees each product as the last
// transaction that changed it left it. That statement locks them too, but a statement judges
// the rows it updates as they were when it began: with the locks taken only there, an order
// that waited for a product while another transaction added to its stock would have reserved
// its other products and stored nothing, and their units would have been lost. Taking every
// lock of a group first, in id order, also means that transactions that wait for each
// other's products never wait in a cycle: there is no deadlock.
const LockProducts = `SELECT FROM products WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE`

// groupProductIDs are the products of the orders of group, each once, in id order.
func groupProductIDs(group []*orderJob) []int64 {
	var ids []int64
	for _, j := range group {
		ids = append(ids, j.ids...)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// insertGroup stores the orders of group in one transaction: all of them at once with
// GroupStatement, or, when that stores nothing because one of them cannot be placed, each
// with OrderStatement in one pipeline, in the group's order, so that an order that cannot be
// placed keeps no other from being placed.
func (in *intake) insertGroup(ctx context.Context, group []*orderJob) error {
	return in.onConn(ctx, func(c *pgx.Conn) error {
		stored, err := insertTogether(ctx, c, group)
		if err != nil || stored {
			return err
		}
		return insertEach(ctx, c, group)
	})
}

// insertTogether runs LockProducts and GroupStatement for group in one pipeline, which
// PostgreSQL runs as one transaction, and tells whether it stored the orders.
func insertTogether(ctx context.Context, c *pgx.Conn, group []*orderJob) (bool, error) {
	b := &pgx.Batch{}
	b.Queue(LockProducts, groupProductIDs(group))
	b.Queue(GroupStatement, groupArgs(group)...)
	res := c.SendBatch(ctx, b)
	defer res.Close()
	if _, err := res.Exec(); err != nil {
		return false, fmt.Errorf("insert orders: lock products: %w", err)
	}
	rows, err := res.Query()
	if err != nil {
		return false, fmt.Errorf("insert orders: %w", err)
	}
	orders, err := scanGroup(rows, group)
	if err != nil {
		return false, err
	}
	// The transaction commits at the end of the pipeline, which Close reads.
	if err := res.Close(); err != nil {
		return false, fmt.Errorf("insert orders: %w", err)
	}
	if orders == nil {
		return false, nil
	}
	for i, j := range group {
		j.order = orders[i]
	}
	return true, nil
}

// scanGroup reads the orders that GroupStatement stored for group from its rows, in the
// group's order, or returns nil when it stored none.
func scanGroup(rows pgx.Rows, group []*orderJob) ([]*oas.Order, error) {
	defer rows.Close()
	orders := make([]*oas.Order, len(group))
	for rows.Next() {
		var (
			k            int
			id           int
			name         string
			it           oas.OrderItem
			total, price decimal.Decimal
		)
		if err := rows.Scan(&k, &id, &total, &name, &it.ID, &it.ProductId, &it.ProductName, &it.Quantity, &price); err != nil {
			return nil, fmt.Errorf("insert orders: %w", err)
		}
		o := orders[k-1]
		if o == nil {
			o = newOrder(group[k-1].orderInput)
			o.ID, o.Total, o.UserName = id, oas.Money(total), name
			orders[k-1] = o
		}
		it.Price = oas.Money(price)
		o.Items = append(o.Items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("insert orders: %w", err)
	}
	if orders[0] == nil {
		return nil, nil
	}
	for i, o := range orders {
		if o == nil {
			return nil, fmt.Errorf("insert orders: order %d of %d missing from the stored group", i+1, len(group))
		}
		sortItems(o)
	}
	return orders, nil
}

// groupArgs are GroupStatement's parameters for group.
func groupArgs(group []*orderJob) []any {
	n := len(group)
	var (
		callers, users        = make([]int64, n), make([]int64, n)
		versions              = make([]int64, n)
		nows                  = make([]time.Time, n)
		eventIDs              = make([]uuid.UUID, n)
		types, keys, payloads = make([]string, n), make([]string, n), make([]string, n)
		headers               = make([]*string, n)
		createdAt             = make([]string, n)
		lineOrder, products   []int64
		quantities            []int64
	)
	for i, j := range group {
		callers[i], versions[i], users[i], nows[i] = int64(j.callerID), int64(j.callerVersion), int64(j.userID), j.now
		eventIDs[i], types[i], keys[i], payloads[i] = j.ev.EventID, j.ev.EventType, j.ev.RoutingKey, string(j.ev.Payload)
		headers[i], createdAt[i] = j.eventHeaders(), j.eventCreatedAt()
		for _, it := range j.items {
			lineOrder = append(lineOrder, int64(i+1))
			products = append(products, int64(it.ProductID))
			quantities = append(quantities, int64(it.Quantity))
		}
	}
	return []any{callers, users, nows, eventIDs, types, keys, payloads, headers, createdAt,
		lineOrder, products, quantities, maxTotal, domain.RoleAdmin, versions}
}

// insertEach runs OrderStatement for every order of group in one pipeline, which PostgreSQL
// runs as one transaction: all of them are stored, or none.
func insertEach(ctx context.Context, c *pgx.Conn, group []*orderJob) error {
	b := &pgx.Batch{}
	b.Queue(LockProducts, groupProductIDs(group))
	for _, j := range group {
		b.Queue(OrderStatement, j.args()...)
	}
	res := c.SendBatch(ctx, b)
	defer res.Close()
	if _, err := res.Exec(); err != nil {
		return fmt.Errorf("insert orders: lock products: %w", err)
	}
	for _, j := range group {
		rows, err := res.Query()
		if err != nil {
			return fmt.Errorf("insert orders: %w", err)
		}
		j.order, err = scanOrder(rows, j.orderInput)
		rows.Close()
		if err != nil {
			return err
		}
	}
	// The transaction commits at the end of the pipeline, which Close reads.
	if err := res.Close(); err != nil {
		return fmt.Errorf("insert orders: %w", err)
	}
	return nil
}

// GroupStatement stores several orders at once, as OrderStatement would store each of them
// in turn when every one of them can be placed: it stores all of them, or nothing (and
// returns no row) when any one of them could not be placed after the ones before it.
//
// Its parameters list the orders, one element per order: callers $1, users $2, times $3,
// OrderCreated event ids $4, types $5, routing keys $6, envelopes $7, headers $8 (NULL for
// none) and the events' createdAt $9, and the versions of the callers' tokens $15. The items
// follow, one element per item: the order's place in the lists above (from 1) $10, product
// $11, quantity $12. $13 is the largest total and $14 the admin role. One row is returned
// per item: the order's place, then what OrderStatement returns.
//
// It checks, locks and reserves as OrderStatement does, but once for every product that
// the orders share: a product's stock must cover the quantity of all the orders, and it is
// reserved in one update. The users and the products are named by $1, $2 and $11 as well as
// through the joins, for the reason OrderStatement's reservation names its products. The
// orders' ids are drawn in the orders' order, and their events are written in it.
const GroupStatement = `
	WITH ord AS (
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $15::bigint[])
			WITH ORDINALITY AS o(caller_id, user_id, at, event_id, event_type, routing_key, payload, headers, created_text, caller_version, k)
	), req AS (
		SELECT * FROM unnest($10::bigint[], $11::bigint[], $12::bigint[]) WITH ORDINALITY AS r(k, product_id, quantity, n)
	), buyer AS (
		SELECT ord.k, u.name FROM ord
		JOIN users u ON u.id = ord.user_id AND u.id = ANY($2::bigint[])
		JOIN users c ON c.id = ord.caller_id AND c.id = ANY($1::bigint[]) AND c.token_version = ord.caller_version
		WHERE c.id = u.id OR c.role = $14
	), locked AS (
		SELECT id, stock, name, price FROM products WHERE id = ANY($11::bigint[]) ORDER BY id FOR NO KEY UPDATE
	), priced AS (
		SELECT req.k, req.n, req.product_id, req.quantity, locked.name, locked.price
		FROM req JOIN locked ON locked.id = req.product_id
	), demand AS (
		SELECT priced.product_id, sum(priced.quantity) AS quantity, max(ord.at) AS at
		FROM priced JOIN ord ON ord.k = priced.k GROUP BY priced.product_id
	), totals AS (
		SELECT k, sum(price * quantity) AS total FROM priced GROUP BY k
	), draft AS (
		SELECT WHERE (SELECT count(*) FROM buyer) = cardinality($1::bigint[])
			AND (SELECT count(*) FROM priced) = cardinality($11::bigint[])
			AND (SELECT count(*) FROM totals WHERE total <= $13::numeric) = cardinality($1::bigint[])
			AND NOT EXISTS (SELECT FROM demand JOIN locked ON locked.id = demand.product_id WHERE locked.stock < demand.quantity)
	), reserved AS (
		UPDATE products p SET stock = p.stock - demand.quantity, updated_at = greatest(p.updated_at, demand.at)
		FROM demand, draft WHERE p.id = ANY($11::bigint[]) AND p.id = demand.product_id AND p.stock >= demand.quantity
		RETURNING p.id
	), ids AS (
		SELECT ord.k, nextval('orders_id_seq') AS id FROM ord, draft
		WHERE (SELECT count(*) FROM reserved) = (SELECT count(*) FROM demand)
	), o AS (
		INSERT INTO orders (id, user_id, total, status, created_at, updated_at)
		SELECT ids.id, ord.user_id, totals.total, 'pending', ord.at, ord.at
		FROM ids JOIN ord ON ord.k = ids.k JOIN totals ON totals.k = ids.k ORDER BY ids.k
		RETURNING id, total
	), items AS (
		INSERT INTO order_items (order_id, product_id, quantity, price)
		SELECT o.id, priced.product_id, priced.quantity, priced.price
		FROM o JOIN ids ON ids.id = o.id JOIN priced ON priced.k = ids.k ORDER BY priced.n
		RETURNING id, order_id, product_id
	), ev AS (
		INSERT INTO outbox (event_id, event_type, routing_key, payload, headers, created_at)
		SELECT ord.event_id, ord.event_type, ord.routing_key, jsonb_set(ord.payload::jsonb, '{data}', jsonb_build_object(
			'orderId', o.id,
			'userId', ord.user_id,
			'total', o.total,
			'items', (SELECT jsonb_agg(jsonb_build_object('productId', product_id, 'quantity', quantity, 'price', price) ORDER BY n) FROM priced WHERE priced.k = ord.k),
			'createdAt', ord.created_text)), ord.headers::jsonb, ord.at
		FROM o JOIN ids ON ids.id = o.id JOIN ord ON ord.k = ids.k ORDER BY ord.k
	)
	SELECT ids.k, o.id, o.total, buyer.name, items.id, items.product_id, priced.name, priced.quantity, priced.price
	FROM o JOIN ids ON ids.id = o.id JOIN buyer ON buyer.k = ids.k
	JOIN items ON items.order_id = o.id JOIN priced ON priced.k = ids.k AND priced.product_id = items.product_id
`
