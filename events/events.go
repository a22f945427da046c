// Package events holds orderflow's event contracts: the payloads of OrderCreated,
// OrderCompleted and OrderExpired, their routing keys and versioned type names, and the
// CloudEvents 1.0 envelope (structured JSON mode) that carries them on RabbitMQ.
// schema.json beside this file is the same contract as a JSON Schema document.
//
// Adding an event type touches, in order of the event's journey:
//
//   - here: its routing key, versioned type and name constants, the payload struct with the
//     Event methods and validate, its entry in decoders (envelope.go) and in All; in
//     schema.json a $defs entry, the type in the envelope's enum and an if/then under its
//     allOf; and a sample in the tests' samples() (TestEveryTypeIsCovered names each of
//     these that a type in decoders lacks);
//   - platform/bus: a consumer name and its entry in SystemQueues, so that every process
//     declares the queue and the event is routable before the worker starts (an unroutable
//     event is returned, and its outbox row held back; TestEveryEventIsRouted names a type
//     without its queue); the same name in the list of internal/testenv/broker.go, which
//     TestTestenvDeletesWhatProcessesDeclare keeps equal;
//   - the writer: outbox.Write (or WriteBatch) inside the transaction of the change the event
//     announces, never after it (a writer that builds its outbox rows in SQL, as the cron
//     job's sweep does, calls outbox.Wake once they commit); an event that announces an
//     order's new status is also written where an admin sets that status, in the switch of
//     UpdateOrderStatus (api/order_status.go);
//   - worker: an idempotent handler (a conditional update, or a row unique per order and
//     event) and its case in Worker.dispatch (without one, the event is dead-lettered as
//     "no handler for event type", and TestEveryEventHasAHandler fails); RegisterConsumers
//     consumes every queue of SystemQueues;
//   - if the worker records a notification for it: the event_type enum and check in
//     ent/schema/notification.go, the check under a new name (a check changed under its
//     old name makes no migration, and go run ./cmd/migrationgen -check says so), then go
//     generate ./... and a migration (migrations/README.md); and the Notification eventType
//     enum in openapi.yaml, since the API lists notifications with it (a client generated
//     from the contract refuses a value outside it; TestEnumsAgree in api fails until the
//     three lists agree);
//   - the README: the routing keys in the Architecture diagram and the queues in
//     Operations > Dead letters.
//
// Changing an event's payload touches the payload struct, validate, schema.json and the
// sample here, and also the writers that build the payload in SQL instead of from the struct,
// which the compiler does not point at:
//
//   - api.OrderStatement and api.GroupStatement: their ev CTE builds OrderCreated's data;
//   - the cron job's sweep (expireBatch in cronjob/sweep.go): it writes OrderExpired's whole
//     envelope, as outbox.WriteBatch would.
package events

import (
	"errors"
	"fmt"
	"time"
)

// Routing keys of the events on the topic exchange.
const (
	RoutingKeyOrderCreated   = "order.created"
	RoutingKeyOrderCompleted = "order.completed"
	RoutingKeyOrderExpired   = "order.expired"
)

// CloudEvents types of the events; the version suffix changes when a payload changes
// incompatibly.
const (
	TypeOrderCreated   = "orderflow.order.created.v1"
	TypeOrderCompleted = "orderflow.order.completed.v1"
	TypeOrderExpired   = "orderflow.order.expired.v1"
)

// Names of the events, as stored in notifications.event_type.
const (
	NameOrderCreated   = "OrderCreated"
	NameOrderCompleted = "OrderCompleted"
	NameOrderExpired   = "OrderExpired"
)

// All returns the zero value of every event type that Decode knows, so that the packages
// downstream can check that each is routed to a queue (platform/bus) and has a handler
// (worker).
func All() []Event { return []Event{OrderCreated{}, OrderCompleted{}, OrderExpired{}} }

// CloudEvents sources: the process that wrote the event.
const (
	SourceAPI     = "orderflow/api"
	SourceWorker  = "orderflow/worker"
	SourceCronJob = "orderflow/cronjob"
)

// Event is one of the payloads of this package, such as OrderCreated (pointers to them
// implement it too). Decode returns the value types. The unexported method keeps the
// set closed.
type Event interface {
	// Name is the event's name, such as "OrderCreated".
	Name() string
	// RoutingKey is the key the event is published with, such as "order.created".
	RoutingKey() string
	// Type is the CloudEvents type, such as "orderflow.order.created.v1".
	Type() string
	// validate reports a payload that breaks the contract (missing ids, no items, ...).
	validate() error
}

// Item is one line of an order.
type Item struct {
	ProductID int   `json:"productId"`
	Quantity  int   `json:"quantity"`
	Price     Money `json:"price"`
}

// OrderCreated announces a new pending order whose stock is reserved.
type OrderCreated struct {
	OrderID   int       `json:"orderId"`
	UserID    int       `json:"userId"`
	Total     Money     `json:"total"`
	Items     []Item    `json:"items"`
	CreatedAt time.Time `json:"createdAt"`
}

// OrderCompleted announces that an order's payment succeeded.
type OrderCompleted struct {
	OrderID     int       `json:"orderId"`
	UserID      int       `json:"userId"`
	Total       Money     `json:"total"`
	CompletedAt time.Time `json:"completedAt"`
}

// OrderExpired announces that an order was expired, its stock released: by the cron job once
// it stayed in processing longer than ExpiredAfter, or by an admin.
type OrderExpired struct {
	OrderID   int       `json:"orderId"`
	UserID    int       `json:"userId"`
	Total     Money     `json:"total"`
	ExpiredAt time.Time `json:"expiredAt"`
	// ExpiredAfter is the threshold that applied, as a Go duration ("10m0s"); for an order an
	// admin expired, the order's age then, in whole seconds and at least "1s".
	ExpiredAfter string `json:"expiredAfter"`
}

// Name implements Event.
func (OrderCreated) Name() string { return NameOrderCreated }

// RoutingKey implements Event.
func (OrderCreated) RoutingKey() string { return RoutingKeyOrderCreated }

// Type implements Event.
func (OrderCreated) Type() string { return TypeOrderCreated }

// Name implements Event.
func (OrderCompleted) Name() string { return NameOrderCompleted }

// RoutingKey implements Event.
func (OrderCompleted) RoutingKey() string { return RoutingKeyOrderCompleted }

// Type implements Event.
func (OrderCompleted) Type() string { return TypeOrderCompleted }

// Name implements Event.
func (OrderExpired) Name() string { return NameOrderExpired }

// RoutingKey implements Event.
func (OrderExpired) RoutingKey() string { return RoutingKeyOrderExpired }

// Type implements Event.
func (OrderExpired) Type() string { return TypeOrderExpired }

func (e OrderCreated) validate() error {
	errs := []error{checkOrder(e.OrderID, e.UserID, e.Total), checkTime("createdAt", e.CreatedAt)}
	if len(e.Items) == 0 {
		errs = append(errs, errors.New("items is empty"))
	}
	for i, it := range e.Items {
		if it.ProductID <= 0 {
			errs = append(errs, fmt.Errorf("items[%d].productId %d is not positive", i, it.ProductID))
		}
		if it.Quantity <= 0 {
			errs = append(errs, fmt.Errorf("items[%d].quantity %d is not positive", i, it.Quantity))
		}
		if it.Price.IsNegative() {
			errs = append(errs, fmt.Errorf("items[%d].price %s is negative", i, it.Price.StringFixed(2)))
		}
	}
	return errors.Join(errs...)
}

func (e OrderCompleted) validate() error {
	return errors.Join(checkOrder(e.OrderID, e.UserID, e.Total), checkTime("completedAt", e.CompletedAt))
}

func (e OrderExpired) validate() error {
	errs := []error{checkOrder(e.OrderID, e.UserID, e.Total), checkTime("expiredAt", e.ExpiredAt)}
	if d, err := time.ParseDuration(e.ExpiredAfter); err != nil || d <= 0 {
		errs = append(errs, fmt.Errorf("expiredAfter %q is not a positive Go duration", e.ExpiredAfter))
	}
	return errors.Join(errs...)
}

func checkOrder(orderID, userID int, total Money) error {
	var errs []error
	if orderID <= 0 {
		errs = append(errs, fmt.Errorf("orderId %d is not positive", orderID))
	}
	if userID <= 0 {
		errs = append(errs, fmt.Errorf("userId %d is not positive", userID))
	}
	if total.IsNegative() {
		errs = append(errs, fmt.Errorf("total %s is negative", total.StringFixed(2)))
	}
	return errors.Join(errs...)
}

func checkTime(name string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s is missing", name)
	}
	return nil
}
