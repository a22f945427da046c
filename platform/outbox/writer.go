// Package outbox implements the transactional outbox: Write stores an event in the same
// transaction as the change it announces, and the relay (Module) publishes stored events to
// RabbitMQ after they commit, oldest first, with publisher confirms.
//
// A row's payload is the complete CloudEvents envelope (the message body), event_type its
// CloudEvents type and routing_key the key it is published with; headers become AMQP headers.
//
// A transaction that wrote with Write wakes the relays of its own process when it commits
// (every process that writes events runs a relay); rows written any other way are found by
// the relays' polling, or at once after a call to Wake.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"orderflow/ent"
	"orderflow/events"
	"orderflow/platform/bus"
	"orderflow/platform/log"
	"orderflow/platform/tracing"
)

// Write inserts e as an unpublished outbox row inside tx, the caller's transaction, and
// returns the event id (also the AMQP message_id). source names the writing process
// (events.SourceAPI, ...); headers are sent as AMQP headers and may be nil. The request id
// and the trace context of ctx are added to them, so the consumers' logs and spans join the
// request's. The event is published only if tx commits.
func Write(ctx context.Context, tx *ent.Tx, source string, e events.Event, headers map[string]string) (uuid.UUID, error) {
	ids, err := WriteBatch(ctx, tx, source, []events.Event{e}, headers)
	if err != nil {
		return uuid.Nil, err
	}
	return ids[0], nil
}

// Row is one outbox row as Write stores it, for a writer that inserts it with a statement
// of its own (together with the change it announces) and calls Wake once that commits.
type Row struct {
	EventID    uuid.UUID
	EventType  string
	RoutingKey string
	// Payload is the CloudEvents envelope, the message body.
	Payload []byte
	// Headers is the JSON object of the AMQP headers, nil for none.
	Headers   []byte
	CreatedAt time.Time
}

// NewEnvelopeRow returns the row that Write would insert for an event of eventType published
// with routingKey and happened at at, except that the envelope's data is an empty object
// (events.NewEnvelopeWithoutData): for a writer that builds the data in its own statement
// from the rows that statement writes, as jsonb_set(payload, '{data}', ...).
func NewEnvelopeRow(ctx context.Context, at time.Time, source, eventType, routingKey string, headers map[string]string) (Row, error) {
	hdr, err := encodeHeaders(ctx, headers)
	if err != nil {
		return Row{}, err
	}
	at = at.UTC()
	return newRow(hdr, routingKey, at, func(id string) (events.Envelope, error) {
		return events.NewEnvelopeWithoutData(id, source, eventType, at)
	})
}

func newRows(ctx context.Context, source string, evs []events.Event, headers map[string]string) ([]Row, error) {
	hdr, err := encodeHeaders(ctx, headers)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	rows := make([]Row, len(evs))
	for i, e := range evs {
		if rows[i], err = newRow(hdr, e.RoutingKey(), now, func(id string) (events.Envelope, error) {
			return events.NewEnvelope(id, source, now, e)
		}); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// newRow gives an event a new id and returns its row, created at now, with the envelope that
// envelope makes for that id.
func newRow(hdr []byte, routingKey string, now time.Time, envelope func(id string) (events.Envelope, error)) (Row, error) {
	// Version 7 ids grow with time, which keeps the unique index compact.
	id, err := uuid.NewV7()
	if err != nil {
		return Row{}, fmt.Errorf("new event id: %w", err)
	}
	env, err := envelope(id.String())
	if err != nil {
		return Row{}, fmt.Errorf("write outbox event: %w", err)
	}
	body, err := env.Encode()
	if err != nil {
		return Row{}, fmt.Errorf("write outbox event: %w", err)
	}
	return Row{EventID: id, EventType: env.Type, RoutingKey: routingKey, Payload: body, Headers: hdr, CreatedAt: now}, nil
}

// encodeHeaders returns headers plus the request id and trace context of ctx as a JSON
// object, or nil when there are none.
func encodeHeaders(ctx context.Context, headers map[string]string) ([]byte, error) {
	headers = withContext(ctx, headers)
	if len(headers) == 0 {
		return nil, nil
	}
	hdr, err := json.Marshal(headers)
	if err != nil {
		return nil, fmt.Errorf("write outbox event: headers: %w", err)
	}
	return hdr, nil
}

// WriteBatch inserts evs in one statement inside tx and returns their event ids in the same
// order. headers apply to every event.
func WriteBatch(ctx context.Context, tx *ent.Tx, source string, evs []events.Event, headers map[string]string) ([]uuid.UUID, error) {
	rows, err := newRows(ctx, source, evs, headers)
	if err != nil {
		return nil, err
	}
	if err := WriteRows(ctx, tx, rows); err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = r.EventID
	}
	return ids, nil
}

// NewRow returns the row that Write would insert for e, for a writer that gathers the rows of
// several callers, each with the request id and trace context of its own ctx, and inserts
// them with WriteRows.
func NewRow(ctx context.Context, source string, e events.Event, headers map[string]string) (Row, error) {
	rows, err := newRows(ctx, source, []events.Event{e}, headers)
	if err != nil {
		return Row{}, err
	}
	return rows[0], nil
}

// WriteRows inserts rows, as NewRow or NewEnvelopeRow made them, in one statement inside tx.
// Their events are published only if tx commits.
func WriteRows(ctx context.Context, tx *ent.Tx, rows []Row) error {
	if len(rows) == 0 {
		return nil
	}
	created := make([]time.Time, len(rows))
	ids := make([]uuid.UUID, len(rows))
	types := make([]string, len(rows))
	keys := make([]string, len(rows))
	bodies := make([]string, len(rows))
	headers := make([]string, len(rows)) // "" for none
	for i, r := range rows {
		created[i], ids[i], types[i], keys[i], bodies[i], headers[i] = r.CreatedAt, r.EventID, r.EventType, r.RoutingKey, string(r.Payload), string(r.Headers)
	}
	// One statement for the batch; plain SQL, as the relay's claim is, because this runs in
	// many transactions and ent's bulk insert costs several times the encoding.
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload, headers)
		SELECT e.created, e.id, e.type, e.key, e.body::jsonb, NULLIF(e.headers, '')::jsonb
		FROM unnest($1::timestamptz[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
			AS e(created, id, type, key, body, headers)`,
		created, ids, types, keys, bodies, headers); err != nil {
		return fmt.Errorf("insert %d outbox events: %w", len(rows), err)
	}
	wakeOnCommit(tx)
	return nil
}

// wakeOnCommit wakes this process's relays once tx has committed.
func wakeOnCommit(tx *ent.Tx) {
	tx.OnCommit(func(next ent.Committer) ent.Committer {
		return ent.CommitFunc(func(ctx context.Context, tx *ent.Tx) error {
			err := next.Commit(ctx, tx)
			if err == nil {
				Wake()
			}
			return err
		})
	})
}

// withContext returns headers plus the request id and W3C trace context of ctx.
func withContext(ctx context.Context, headers map[string]string) map[string]string {
	out := make(map[string]string, len(headers)+3)
	tracing.Inject(ctx, out)
	if id := log.RequestID(ctx); id != "" {
		out[bus.HeaderRequestID] = id
	}
	for k, v := range headers {
		out[k] = v
	}
	return out
}
