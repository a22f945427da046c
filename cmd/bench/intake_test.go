package main

import (
	"context"
	"testing"
	"time"

	"orderflow/internal/testenv"
)

// TestAPITurnWaitsForTheRelay checks that an API turn of the closed loops ends only once the
// api's relay has published what the turn wrote, so that its publishing does not load the
// reference's turn that follows.
func TestAPITurnWaitsForTheRelay(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Pool(t, testenv.Database(t))
	written := make(chan int64, 1)
	load := func() phase {
		var id int64
		// The turn ends with an event its relay has not published yet.
		err := pool.QueryRowContext(ctx, `INSERT INTO outbox (created_at, event_id, event_type, routing_key, payload)
			VALUES (now(), gen_random_uuid(), 'orderflow.order.created.v1', 'order.created', '{}') RETURNING id`).Scan(&id)
		if err != nil {
			t.Fatalf("insert event: %v", err)
		}
		written <- id
		return phase{Done: 1}
	}
	published := make(chan error, 1)
	go func() {
		// The relay publishes it a little later.
		id := <-written
		time.Sleep(300 * time.Millisecond)
		_, err := pool.ExecContext(ctx, `UPDATE outbox SET published_at = now() WHERE id = $1`, id)
		published <- err
	}()
	p, _, err := apiTurn(ctx, pool, load)
	if err != nil {
		t.Fatal(err)
	}
	var waiting int
	if err := pool.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&waiting); err != nil {
		t.Fatal(err)
	}
	if waiting != 0 || p.Done != 1 {
		t.Errorf("the API's turn ended with %d events unpublished and %d orders done; want 0 and 1", waiting, p.Done)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
}
