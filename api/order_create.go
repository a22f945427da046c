package api

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/events"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
)

// idempotencyKeyTTL is how long an Idempotency-Key is remembered; older keys are pruned
// and may be used again.
const idempotencyKeyTTL = 24 * time.Hour

// The foreign keys from an order, and from an idempotency key, to their user.
const (
	orderUserKey          = "orders_users_orders"
	idempotencyKeyUserKey = "idempotency_keys_users_idempotency_keys"
)

// errOrderForAnother refuses a customer's order for another user.
var errOrderForAnother = problem(http.StatusForbidden, "A customer may only order for itself.")

// errIdempotencyConflict means that a concurrent request stored the same Idempotency-Key
// first; the transaction is rolled back and that request's order is answered instead.
var errIdempotencyConflict = errors.New("idempotency key stored concurrently")

// CreateOrder places an order: in one statement it reserves the stock of every item with a
// conditional update, inserts the order and its items with the current unit prices and
// writes the OrderCreated event to the outbox; an Idempotency-Key is stored in the same
// transaction.
func (h *Handler) CreateOrder(ctx context.Context, req *oas.OrderCreate, params oas.CreateOrderParams) (*oas.OrderHeaders, error) {
	orderOperationRuns(ctx)
	o, err := h.createOrder(ctx, req, params)
	ordersCreated.WithLabelValues(orderOutcome(err)).Inc()
	return o, err
}

func (h *Handler) createOrder(ctx context.Context, req *oas.OrderCreate, params oas.CreateOrderParams) (*oas.OrderHeaders, error) {
	// The caller's user is read by the order statement (or, with an Idempotency-Key, below).
	callerID, callerVersion, err := callerToken(ctx)
	if err != nil {
		return nil, err
	}
	items, checks := orderItems(req)
	if err := checks.err(); err != nil {
		return nil, err
	}
	userID := req.UserId.Or(callerID)

	key, hash := "", ""
	if params.IdempotencyKey.Set {
		// A replay answers before the order statement, which would refuse a deleted caller,
		// a token issued before the caller's password was changed, and a customer ordering
		// for another user (an admin's key, replayed after it lost the role).
		p, err := principalFrom(ctx)
		if err != nil {
			return nil, err
		}
		if userID != callerID && !p.IsAdmin() {
			return nil, errOrderForAnother
		}
		// A proxy that joins repeated headers would pass the keys on as one other key, so that
		// a retry through it would not be recognized.
		if requestInfoFrom(ctx).idempotencyKeys > 1 {
			return nil, invalid("Idempotency-Key", givenTwice)
		}
		if !printableASCII(params.IdempotencyKey.Value) {
			return nil, invalid("Idempotency-Key", "must be printable ASCII")
		}
		key, hash = params.IdempotencyKey.Value, requestHash(userID, items)
		if o, err := h.replay(ctx, callerID, key, hash); o != nil || err != nil {
			return created(o), err
		}
	}

	o, err := h.storeOrder(ctx, orderInput{callerID: callerID, callerVersion: callerVersion, userID: userID, items: items}, key, hash)
	if errors.Is(err, errIdempotencyConflict) {
		o, err := h.replay(ctx, callerID, key, hash)
		if o == nil && err == nil {
			err = fmt.Errorf("replay idempotency key: %w", errIdempotencyConflict)
		}
		return created(o), err
	}
	if db.Code(err) == db.ForeignKeyViolation {
		// A user was deleted while the order was being placed, after its statement found
		// it: the order's user, named by the request when it is another than the caller, or
		// the caller, whose order or idempotency key refers to it.
		switch db.Constraint(err) {
		case orderUserKey:
			if userID != callerID {
				return nil, invalid("userId", errNoSuchUser.Error())
			}
			return nil, errTokenUserGone
		case idempotencyKeyUserKey:
			return nil, errTokenUserGone
		}
	}
	if err != nil {
		return nil, err
	}
	return created(o), nil
}

// orderItems returns the items that req asks for, and their field checks: those of
// domain.ValidateItems, which adds to the contract's rules that no product is listed twice.
func orderItems(req *oas.OrderCreate) ([]domain.Item, fieldChecks) {
	items := make([]domain.Item, len(req.Items))
	for i, it := range req.Items {
		items[i] = domain.Item{ProductID: it.ProductId, Quantity: it.Quantity}
	}
	return items, itemFields(domain.ValidateItems(items))
}

// createOrderChecks are the field checks of CreateOrder's body (orderItems).
func createOrderChecks(req *oas.OrderCreate) fieldChecks {
	_, c := orderItems(req)
	return c
}

// itemFields names the fields at fault in err, an error of domain.ValidateItems, by their
// JSON paths: an item's quantity or product, or the items when there are none.
func itemFields(err error) fieldChecks {
	if err == nil {
		return nil // an order's request passes here
	}
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	var c fieldChecks
	for _, err := range errs {
		var itE *domain.ItemError
		switch {
		case errors.As(err, &itE) && errors.Is(itE.Err, domain.ErrBadQuantity):
			c.check(fmt.Sprintf("items[%d].quantity", itE.Index), itE.Err)
		case errors.As(err, &itE):
			c.check(fmt.Sprintf("items[%d].productId", itE.Index), itE.Err)
		default:
			c.check("items", err)
		}
	}
	return c
}

func created(o *oas.Order) *oas.OrderHeaders {
	if o == nil {
		return nil
	}
	return &oas.OrderHeaders{Location: "/api/orders/" + strconv.Itoa(o.ID), Response: *o}
}

// requestHash fingerprints an order request after defaults are applied.
func requestHash(userID int, items []domain.Item) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(userID))
	for _, it := range items {
		fmt.Fprintf(&b, ";%d:%d", it.ProductID, it.Quantity)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// replay returns the order that an earlier request with the same Idempotency-Key created,
// nil if the key is unknown (or older than idempotencyKeyTTL), ErrIdempotencyKeyReused when
// the key came with another request, or ErrIdempotencyKeyOrderDeleted when the order that
// the key's first request placed has been deleted since.
func (h *Handler) replay(ctx context.Context, callerID int, key, hash string) (*oas.Order, error) {
	var (
		storedHash string
		orderID    sql.NullInt64
	)
	err := h.db.QueryRowContext(ctx, `
		SELECT request_hash, order_id FROM idempotency_keys
		WHERE user_id = $1 AND key = $2 AND created_at > $3`,
		callerID, key, h.now().Add(-idempotencyKeyTTL)).Scan(&storedHash, &orderID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up idempotency key: %w", err)
	}
	if storedHash != hash {
		return nil, ErrIdempotencyKeyReused
	}
	if !orderID.Valid {
		return nil, ErrIdempotencyKeyOrderDeleted
	}
	orders, err := loadOrders(ctx, h.db, []int{int(orderID.Int64)})
	if err != nil {
		return nil, err
	}
	if len(orders) == 0 { // deleted since the key was read
		return nil, ErrIdempotencyKeyOrderDeleted
	}
	return &orders[0], nil
}

// storeOrder places the order of in.userID for in.items, made by in.callerID with a token of
// in.callerVersion: one statement (OrderStatement) checks the caller and the user, reserves
// the stock, inserts the order and its items at the products' current prices and writes the
// OrderCreated event to the outbox. Without an Idempotency-Key the order goes to the intake
// (intake.go), which runs OrderStatement for an order that waits alone and GroupStatement,
// the same checks and writes for several orders, for orders that wait together: a change to
// one statement's rules belongs in the other too, and in explainRefusal
// (TestBothStatementsRefuseAlike compares them). With an Idempotency-Key OrderStatement runs
// in a transaction of its own that also stores the key. When the statement stores nothing,
// a second query says why.
func (h *Handler) storeOrder(ctx context.Context, in orderInput, key, hash string) (*oas.Order, error) {
	in.ids = productIDs(in.items)
	o, err := h.insertUnderStockLocks(ctx, in, key, hash)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return nil, explainRefusal(ctx, h.db, in)
	}
	outbox.Wake()
	return o, nil
}

// insertUnderStockLocks stores the order of in, placed now, while holding this process's
// locks on the products: through the intake, or, with an Idempotency-Key, with insertOrder
// in a transaction that also stores the key. It takes the locks before the statement, and
// releases them once the transaction has ended, and with it the rows' locks in PostgreSQL.
func (h *Handler) insertUnderStockLocks(ctx context.Context, in orderInput, key, hash string) (*oas.Order, error) {
	unlock, err := h.stock.lock(ctx, in.ids)
	if err != nil {
		return nil, fmt.Errorf("wait for stock: %w", err)
	}
	defer unlock()
	// One instant, at PostgreSQL's precision, is the order's createdAt as stored and
	// answered, and its OrderCreated event's time and data.createdAt.
	in.now = h.now().Truncate(time.Microsecond)
	in.ev, err = outbox.NewEnvelopeRow(ctx, in.now, events.SourceAPI, events.TypeOrderCreated, events.RoutingKeyOrderCreated, actorHeaders(in.callerID))
	if err != nil {
		return nil, fmt.Errorf("write OrderCreated: %w", err)
	}
	if key == "" {
		return h.intake.store(&orderJob{ctx: ctx, orderInput: in})
	}
	var o *oas.Order
	err = db.WithTx(ctx, h.client, func(tx *ent.Tx) error {
		if err := claimIdempotencyKey(ctx, tx, in.callerID, key, in.now); err != nil {
			return err
		}
		if o, err = insertOrder(ctx, tx, in); err != nil || o == nil {
			return err
		}
		return storeIdempotencyKey(ctx, tx, in.callerID, key, hash, o.ID, in.now)
	})
	return o, err
}

// claimIdempotencyKey makes the requests with one key take turns until tx ends, and returns
// errIdempotencyConflict when the key is already stored: a retry sent while its first request
// was being placed waits for it and answers with its order, instead of placing a second one or
// failing on the stock the first took.
func claimIdempotencyKey(ctx context.Context, tx *ent.Tx, callerID int, key string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1::int, hashtext($2))`, callerID, key); err != nil {
		return fmt.Errorf("claim idempotency key: %w", err)
	}
	// A statement of its own, so that it sees a key committed while the lock was awaited.
	var stored bool
	if err := queryRow(ctx, tx, `SELECT EXISTS (SELECT FROM idempotency_keys
		WHERE user_id = $1 AND key = $2 AND created_at > $3)`,
		callerID, key, now.Add(-idempotencyKeyTTL)).Scan(&stored); err != nil {
		return fmt.Errorf("claim idempotency key: %w", err)
	}
	if stored {
		return errIdempotencyConflict
	}
	return nil
}

// productIDs lists the products of items, in their order.
func productIDs(items []domain.Item) []int64 {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = int64(it.ProductID)
	}
	return ids
}

// storeIdempotencyKey remembers key for the order inside tx. A key older than the TTL is
// taken over; a live one (stored by a concurrent request) is errIdempotencyConflict.
func storeIdempotencyKey(ctx context.Context, tx *ent.Tx, callerID int, key, hash string, orderID int, now time.Time) error {
	var id int64
	err := queryRow(ctx, tx, `
		INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, key) DO UPDATE
		SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id, created_at = EXCLUDED.created_at
		WHERE idempotency_keys.created_at <= $6
		RETURNING id`,
		callerID, key, hash, orderID, now, now.Add(-idempotencyKeyTTL)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return errIdempotencyConflict
	}
	if err != nil {
		return fmt.Errorf("store idempotency key: %w", err)
	}
	return nil
}

// orderInput is one order as OrderStatement stores it: callerID, with a token of
// callerVersion, places the order of userID for items (of products ids, in the items' order)
// at now. ev is its OrderCreated row without the data, which the statement fills in.
type orderInput struct {
	callerID, callerVersion int
	userID                  int
	items                   []domain.Item
	ids                     []int64
	now                     time.Time
	ev                      outbox.Row
}

// insertOrder runs LockProducts for in's products and then OrderStatement for in, inside tx,
// and returns the stored order, or nil when the statement stored nothing. The intake sends
// the same two statements in one pipeline (insertEach).
func insertOrder(ctx context.Context, tx *ent.Tx, in orderInput) (*oas.Order, error) {
	if _, err := tx.ExecContext(ctx, LockProducts, in.ids); err != nil {
		return nil, fmt.Errorf("insert order: lock products: %w", err)
	}
	rows, err := tx.QueryContext(ctx, OrderStatement, in.args()...)
	if err != nil {
		return nil, fmt.Errorf("insert order: %w", err)
	}
	defer rows.Close()
	return scanOrder(rows, in)
}

// args are OrderStatement's parameters for in.
func (in orderInput) args() []any {
	qty := make([]int64, len(in.items))
	for i, it := range in.items {
		qty[i] = int64(it.Quantity)
	}
	return []any{in.callerID, in.userID, in.ids, qty, in.now, maxTotal, in.ev.EventID, in.ev.EventType, in.ev.RoutingKey,
		string(in.ev.Payload), in.eventHeaders(), in.eventCreatedAt(), domain.RoleAdmin, in.callerVersion}
}

// eventHeaders are the headers of in's OrderCreated row as a parameter: nil (SQL NULL) for
// none.
func (in orderInput) eventHeaders() *string {
	if in.ev.Headers == nil {
		return nil
	}
	h := string(in.ev.Headers)
	return &h
}

// eventCreatedAt is the createdAt of in's OrderCreated event.
func (in orderInput) eventCreatedAt() string {
	return in.now.Format(time.RFC3339Nano)
}

// resultRows are the rows of a query, from database/sql or pgx.
type resultRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// scanOrder reads the order stored for in from OrderStatement's rows, or returns nil when
// there are none.
func scanOrder(rows resultRows, in orderInput) (*oas.Order, error) {
	o := newOrder(in)
	for rows.Next() {
		var (
			it           oas.OrderItem
			total, price decimal.Decimal
		)
		if err := rows.Scan(&o.ID, &total, &o.UserName, &it.ID, &it.ProductId, &it.ProductName, &it.Quantity, &price); err != nil {
			return nil, fmt.Errorf("insert order: %w", err)
		}
		o.Total, it.Price = oas.Money(total), oas.Money(price)
		o.Items = append(o.Items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("insert order: %w", err)
	}
	if len(o.Items) == 0 {
		return nil, nil
	}
	sortItems(o)
	return o, nil
}

// newOrder is in's order as stored, without its id, total, user name and items.
func newOrder(in orderInput) *oas.Order {
	return &oas.Order{
		UserId:    in.userID,
		Status:    oas.OrderStatusPending,
		CreatedAt: in.now,
		UpdatedAt: in.now,
	}
}

// sortItems lists o's items in the order they were stored, as GET returns them.
func sortItems(o *oas.Order) {
	slices.SortFunc(o.Items, func(a, b oas.OrderItem) int { return a.ID - b.ID })
}

// maxTotal is OrderStatement's $6.
var maxTotal = domain.MaxMoney.String()

// OrderStatement is the statement that stores an order (cmd/bench runs it through pgbench
// as the reference for order intake). Caller $1 places an order for user $2 of products $3
// in quantities $4 at $5; $6 is the largest total. The OrderCreated outbox row has event id
// $7, type $8, routing key $9, headers $11 and envelope $10, whose data the statement builds
// with the event's createdAt $12. $13 is the admin role, and $14 the version of the caller's
// token. One row is returned per item: the order's id, total and user name, and the item's
// id, product id, product name, quantity and unit price.
//
// It stores nothing, and returns no row, unless the caller exists, its token_version is $14
// (its password has not changed since the token was issued) and it is the user or an admin,
// the user and every product exist, every product has enough stock and the total is at most
// $6; explainRefusal then says which failed.
//
// It runs in a transaction after LockProducts for its products, in a statement of its own
// (see there: locked only by this statement, a product whose stock another transaction raised
// meanwhile would be judged by its stock before that). The products are locked in id order
// first, so that an order that waits for another's products never waits in a cycle (there
// is no deadlock), and the stock of all of them is checked under the locks before any is
// reserved. The locking CTE is not inlined (it has FOR NO KEY UPDATE), and the reservation
// joins the draft, which needs its whole result, so every lock is taken before the first row
// is updated. The order copies the prices read under the locks: an order pays the price in
// force when it was placed. Inserting the items while holding the products' locks spares
// PostgreSQL a shared (multixact) lock for each foreign-key check. The reservation names
// its products by $3 as well as through the join: without that, a catalogue of a thousand
// products is small enough for PostgreSQL to read all of it, with every row version that
// recent orders left, for each order.
const OrderStatement = `
	WITH req AS (
		SELECT * FROM unnest($3::bigint[], $4::bigint[]) WITH ORDINALITY AS r(product_id, quantity, n)
	), buyer AS (
		SELECT u.name FROM users u JOIN users c ON c.id = $1 AND c.token_version = $14
		WHERE u.id = $2 AND (c.id = u.id OR c.role = $13)
	), locked AS (
		SELECT id, stock, name, price FROM products WHERE id = ANY($3::bigint[]) ORDER BY id FOR NO KEY UPDATE
	), priced AS (
		SELECT req.n, req.product_id, req.quantity, locked.name, locked.price
		FROM req JOIN locked ON locked.id = req.product_id AND locked.stock >= req.quantity
	), draft AS (
		SELECT sum(price * quantity) AS total FROM priced
		HAVING count(*) = cardinality($3::bigint[]) AND sum(price * quantity) <= $6::numeric AND EXISTS (SELECT FROM buyer)
	), reserved AS (
		UPDATE products p SET stock = p.stock - priced.quantity, updated_at = greatest(p.updated_at, $5)
		FROM priced, draft WHERE p.id = ANY($3::bigint[]) AND p.id = priced.product_id AND p.stock >= priced.quantity
		RETURNING p.id
	), o AS (
		INSERT INTO orders (user_id, total, status, created_at, updated_at)
		SELECT $2, draft.total, 'pending', $5, $5 FROM draft
		WHERE (SELECT count(*) FROM reserved) = cardinality($3::bigint[])
		RETURNING id, total
	), items AS (
		INSERT INTO order_items (order_id, product_id, quantity, price)
		SELECT o.id, priced.product_id, priced.quantity, priced.price FROM o, priced ORDER BY priced.n
		RETURNING id, product_id
	), ev AS (
		INSERT INTO outbox (event_id, event_type, routing_key, payload, headers, created_at)
		SELECT $7, $8, $9, jsonb_set($10::jsonb, '{data}', jsonb_build_object(
			'orderId', o.id,
			'userId', $2::bigint,
			'total', o.total,
			'items', (SELECT jsonb_agg(jsonb_build_object('productId', product_id, 'quantity', quantity, 'price', price) ORDER BY n) FROM priced),
			'createdAt', $12::text)), $11::jsonb, $5
		FROM o
	)
	SELECT o.id, o.total, buyer.name, items.id, items.product_id, priced.name, priced.quantity, priced.price
	FROM o, buyer, items JOIN priced ON priced.product_id = items.product_id`

var (
	errNoSuchUser    = errors.New("no such user")
	errNoSuchProduct = errors.New("no such product")
)

// explainRefusal says why OrderStatement stored nothing, checking what it checked in the
// order the answers take precedence: the caller is gone or its token was issued before its
// password was changed (401), a customer ordering for someone else (403), the user or some
// of the products do not exist (400, naming each) or the total is too large (400), a
// product has too little stock (409). A refusal that no longer shows (the stock came back
// meanwhile) is a 409 too.
func explainRefusal(ctx context.Context, q querier, in orderInput) error {
	callerID, userID, items := in.callerID, in.userID, in.items
	rows, err := q.QueryContext(ctx, `
		SELECT c.role, c.token_version, u.id, p.id, p.price, p.stock
		FROM (SELECT) one
		LEFT JOIN users c ON c.id = $1
		LEFT JOIN users u ON u.id = $2
		LEFT JOIN products p ON p.id = ANY($3)`, callerID, userID, in.ids)
	if err != nil {
		return fmt.Errorf("check refused order: %w", err)
	}
	defer rows.Close()
	type product struct {
		price decimal.Decimal
		stock int
	}
	var (
		role     sql.NullString
		version  sql.NullInt64
		user     sql.NullInt64
		products = make(map[int]product, len(items))
	)
	for rows.Next() {
		var (
			id    sql.NullInt64
			price decimal.NullDecimal
			stock sql.NullInt64
		)
		if err := rows.Scan(&role, &version, &user, &id, &price, &stock); err != nil {
			return fmt.Errorf("check refused order: %w", err)
		}
		if id.Valid {
			products[int(id.Int64)] = product{price: price.Decimal, stock: int(stock.Int64)}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check refused order: %w", err)
	}
	switch {
	case !role.Valid:
		return errTokenUserGone
	case version.Int64 != int64(in.callerVersion):
		return errTokenPasswordChanged
	case userID != callerID && !(Principal{Role: role.String}).IsAdmin():
		return errOrderForAnother
	}
	var c fieldChecks
	if !user.Valid {
		c.check("userId", errNoSuchUser)
	}
	lines := make([]domain.Line, len(items))
	for i, it := range items {
		p, ok := products[it.ProductID]
		if !ok {
			c.check(fmt.Sprintf("items[%d].productId", i), errNoSuchProduct)
		}
		lines[i] = domain.Line{Price: p.price, Quantity: it.Quantity}
	}
	if err := c.err(); err != nil {
		return err
	}
	if _, err := domain.Total(lines); err != nil {
		return invalid("items", err.Error())
	}
	for _, it := range items {
		if p := products[it.ProductID]; p.stock < it.Quantity {
			return fmt.Errorf("%w: product %d has %d left, %d requested", ErrInsufficientStock, it.ProductID, p.stock, it.Quantity)
		}
	}
	return fmt.Errorf("%w: stock changed while ordering", ErrInsufficientStock)
}

// actorHeaders names the user who caused an event, for the audit trail.
func actorHeaders(userID int) map[string]string {
	return map[string]string{"actor-user-id": strconv.Itoa(userID)}
}
