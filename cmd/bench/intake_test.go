package main

import (
	"context"
	"math"
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

// TestPgbenchPhaseLeavesOutConnecting: pgbench's -T counts the time its clients took to
// connect, its tps does not; merged phases keep pgbench's rate, as the API's turns, whose
// connections are open already, are measured.
func TestPgbenchPhaseLeavesOutConnecting(t *testing.T) {
	out := []byte(`pgbench (15.19 (Debian 15.19-0+deb12u1))
transaction type: intake.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 32
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 83476
number of failed transactions: 0 (0.000%)
latency average = 1.798 ms
initial connection time = 537.084 ms
tps = 17800.130589 (without initial connection time)
`)
	p, err := pgbenchPhase(out, 32, 5)
	if err != nil {
		t.Fatal(err)
	}
	if p.Done != 83476 || p.P50 != 1.798 || p.Throughput != 17800.130589 {
		t.Errorf("phase %+v", p)
	}
	m := merge([]phase{p, p})
	if math.Abs(m.Throughput-17800.13) > 0.5 {
		t.Errorf("merged throughput %.2f, want pgbench's 17800.13 (not its transactions over -T, %.0f)", m.Throughput, 83476.0/5)
	}
}
