package outbox_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"go.opentelemetry.io/otel/trace"

	"orderflow/ent"
	entoutbox "orderflow/ent/outbox"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/bus"
	"orderflow/platform/db"
	"orderflow/platform/log"
	"orderflow/platform/outbox"
)

func newClient(t *testing.T) (*ent.Client, string) {
	t.Helper()
	cfg := testenv.Database(t)
	return db.NewClient(testenv.Pool(t, cfg)), cfg.DSN()
}

func completed(orderID int) events.OrderCompleted {
	return events.OrderCompleted{OrderID: orderID, UserID: 2, Total: events.NewMoney(decimal.NewFromInt(10)), CompletedAt: time.Now()}
}

func TestWriteCommitted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := newClient(t)
	headers := map[string]string{"x-request-id": "req-1"}
	var id uuid.UUID
	err := db.WithTx(ctx, client, func(tx *ent.Tx) error {
		var err error
		id, err = outbox.Write(ctx, tx, events.SourceWorker, completed(41), headers)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	row, err := client.Outbox.Query().Where(entoutbox.EventID(id)).Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if row.EventType != events.TypeOrderCompleted || row.RoutingKey != events.RoutingKeyOrderCompleted {
		t.Errorf("type %q, routing key %q", row.EventType, row.RoutingKey)
	}
	if row.PublishedAt != nil || row.Attempts != 0 || row.LastError != nil {
		t.Errorf("new row is not unpublished: %+v", row)
	}
	if row.Headers["x-request-id"] != "req-1" {
		t.Errorf("headers %v", row.Headers)
	}
	// The payload is the message body, money exact after a jsonb round trip.
	if !strings.Contains(string(row.Payload), `"total": 10.00`) {
		t.Errorf("payload %s does not keep 10.00", row.Payload)
	}
	env, ev, err := events.Decode(row.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if env.ID != id.String() || env.Source != events.SourceWorker || ev.(events.OrderCompleted).OrderID != 41 {
		t.Errorf("envelope %+v, event %+v", env, ev)
	}
}

func TestWriteRolledBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := newClient(t)
	errAbort := errors.New("abort")
	err := db.WithTx(ctx, client, func(tx *ent.Tx) error {
		if _, err := outbox.Write(ctx, tx, events.SourceAPI, completed(1), nil); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatal(err)
	}
	if n := client.Outbox.Query().CountX(ctx); n != 0 {
		t.Errorf("%d rows after rollback", n)
	}
}

func TestWriteRejectsInvalidEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := newClient(t)
	err := db.WithTx(ctx, client, func(tx *ent.Tx) error {
		_, err := outbox.Write(ctx, tx, events.SourceAPI, events.OrderCompleted{}, nil)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "orderId 0 is not positive") {
		t.Fatalf("writing an OrderCompleted without an order: %v, want its validation error", err)
	}
}

func TestWriteCarriesRequestIDAndTrace(t *testing.T) {
	t.Parallel()
	client, _ := newClient(t)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: mustTraceID(t, traceID), SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(log.WithRequestID(context.Background(), "req-9"), sc)
	var id uuid.UUID
	err := db.WithTx(ctx, client, func(tx *ent.Tx) error {
		var err error
		id, err = outbox.Write(ctx, tx, events.SourceAPI, completed(7), map[string]string{"x-extra": "1"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	row := client.Outbox.Query().Where(entoutbox.EventID(id)).OnlyX(ctx)
	if row.Headers[bus.HeaderRequestID] != "req-9" || row.Headers["x-extra"] != "1" ||
		!strings.Contains(row.Headers["traceparent"], traceID) {
		t.Errorf("headers %v lack the request id, the caller's header or the trace", row.Headers)
	}
}

func TestNewEnvelopeRowLeavesOnlyTheData(t *testing.T) {
	ctx := log.WithRequestID(context.Background(), "req-10")
	at := time.Date(2026, 12, 7, 22, 0, 0, 123456000, time.UTC)
	row, err := outbox.NewEnvelopeRow(ctx, at, events.SourceAPI, events.TypeOrderCreated, events.RoutingKeyOrderCreated, map[string]string{"x-extra": "1"})
	if err != nil {
		t.Fatal(err)
	}
	var env events.Envelope
	if err := json.Unmarshal(row.Payload, &env); err != nil {
		t.Fatal(err)
	}
	if env.SpecVersion != events.SpecVersion || env.ID != row.EventID.String() || env.Source != events.SourceAPI ||
		env.Type != events.TypeOrderCreated || env.DataContentType != events.DataContentType ||
		!env.Time.Equal(at) || !row.CreatedAt.Equal(at) || string(env.Data) != "{}" {
		t.Errorf("envelope %+v for row %+v", env, row)
	}
	if row.EventType != events.TypeOrderCreated || row.RoutingKey != events.RoutingKeyOrderCreated {
		t.Errorf("row type %q, routing key %q", row.EventType, row.RoutingKey)
	}
	var headers map[string]string
	if err := json.Unmarshal(row.Headers, &headers); err != nil || headers[bus.HeaderRequestID] != "req-10" || headers["x-extra"] != "1" {
		t.Errorf("headers %s (%v)", row.Headers, err)
	}
}

func mustTraceID(t *testing.T, s string) trace.TraceID {
	t.Helper()
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestBacklogCollector(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, dsn := newClient(t)
	pool, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	collector := outbox.NewBacklogCollector(pool, slog.New(slog.DiscardHandler))
	firstRead := time.Now()
	if got := testutil.ToFloat64Metric(t, collector, "orderflow_outbox_backlog"); got != 0 {
		t.Errorf("empty outbox backlog = %v", got)
	}
	err = db.WithTx(ctx, client, func(tx *ent.Tx) error {
		_, err := outbox.WriteBatch(ctx, tx, events.SourceAPI, []events.Event{completed(1), completed(2), completed(3)}, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(`UPDATE outbox SET created_at = now() - interval '90 seconds'`); err != nil {
		t.Fatal(err)
	}
	// Scrapes within a second of a reading report it without reading again.
	if got := testutil.ToFloat64Metric(t, collector, "orderflow_outbox_backlog"); got != 0 && time.Since(firstRead) < time.Second {
		t.Errorf("backlog read again within a second: %v, want the last reading 0", got)
	}
	// A second of this is the reading's cache (backlogReadInterval); the rest is room for a
	// slow database.
	testutil.Eventually(t, 30*time.Second, "the backlog read again", func() bool {
		return testutil.ToFloat64Metric(t, collector, "orderflow_outbox_backlog") == 3
	})
	if got := testutil.ToFloat64Metric(t, collector, "orderflow_outbox_oldest_unpublished_age_seconds"); got < 89 || got > 200 {
		t.Errorf("oldest age = %v, want about 90 s", got)
	}
}

// TestBacklogCollectorLogsAFailedReading: a backlog that cannot be read is reported as a
// failed scrape, and the reason is logged.
func TestBacklogCollectorLogsAFailedReading(t *testing.T) {
	t.Parallel()
	_, dsn := newClient(t)
	pool, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	var logs bytes.Buffer
	collector := outbox.NewBacklogCollector(pool, slog.New(slog.NewTextHandler(&logs, nil)))
	if got := testutil.ToFloat64Metric(t, collector, "orderflow_outbox_backlog_scrape_success"); got != 0 {
		t.Errorf("scrape success %v with a closed pool, want 0", got)
	}
	if !strings.Contains(logs.String(), "database is closed") {
		t.Errorf("log %q does not give the reason", logs.String())
	}
}

// TestWriteRowsKeepsEachRowsHeaders: rows made by NewRow for different callers keep each its
// own request id in one statement, a row without headers stores none, and every row is as
// Write stores it.
func TestWriteRowsKeepsEachRowsHeaders(t *testing.T) {
	t.Parallel()
	client, _ := newClient(t)
	ctx := context.Background()
	var rows []outbox.Row
	for i, reqID := range []string{"req-a", "req-b", ""} {
		rctx := ctx
		if reqID != "" {
			rctx = log.WithRequestID(ctx, reqID)
		}
		row, err := outbox.NewRow(rctx, events.SourceWorker, completed(100+i), nil)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	err := db.WithTx(ctx, client, func(tx *ent.Tx) error { return outbox.WriteRows(ctx, tx, rows) })
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"req-a", "req-b", ""} {
		got := client.Outbox.Query().Where(entoutbox.EventID(rows[i].EventID)).OnlyX(ctx)
		if got.Headers[bus.HeaderRequestID] != want || (want == "" && got.Headers != nil) {
			t.Errorf("row %d: headers %v, want request id %q", i, got.Headers, want)
		}
		if got.EventType != events.TypeOrderCompleted || got.RoutingKey != events.RoutingKeyOrderCompleted ||
			!got.CreatedAt.Equal(rows[i].CreatedAt.Truncate(time.Microsecond)) {
			t.Errorf("row %d: type %q, key %q, created %v, want %v", i, got.EventType, got.RoutingKey, got.CreatedAt, rows[i].CreatedAt)
		}
		_, ev, err := events.Decode(got.Payload)
		if err != nil || ev.(events.OrderCompleted).OrderID != 100+i {
			t.Errorf("row %d: payload %s: %v", i, got.Payload, err)
		}
	}
}
