package api

import (
	"database/sql"
	"testing"
	"time"

	"go.uber.org/fx/fxtest"
)

// keyFixture stores, for a new user, expired Idempotency-Keys named expired-1..expired-N
// and one fresh key.
func keyFixture(t *testing.T, pool *sql.DB, expired int) {
	t.Helper()
	var user int
	if err := pool.QueryRow(`INSERT INTO users (name, email, password_hash, role, created_at, updated_at)
		VALUES ('Key Holder', 'keys@example.com', 'x', 'customer', now(), now()) RETURNING id`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(`INSERT INTO idempotency_keys (user_id, key, request_hash, created_at)
		SELECT $1::bigint, 'expired-' || i, repeat('0', 64), now() - interval '25 hours' FROM generate_series(1, $2) AS i
		UNION ALL SELECT $1::bigint, 'fresh', repeat('0', 64), now() - interval '23 hours'`, user, expired); err != nil {
		t.Fatal(err)
	}
}

func countKeys(t *testing.T, pool *sql.DB, pattern string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(`SELECT count(*) FROM idempotency_keys WHERE key LIKE $1`, pattern).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestExpiredKeysArePrunedWithoutRequests checks that the API deletes the keys older than a
// day by itself, with no request that sends a key.
func TestExpiredKeysArePrunedWithoutRequests(t *testing.T) {
	t.Parallel()
	cfg, pool, _ := openDatabase(t)
	keyFixture(t, pool, 3)
	app := fxtest.New(t, moduleApp(cfg))
	app.RequireStart()
	defer app.RequireStop()
	deadline := time.Now().Add(10 * time.Second)
	for countKeys(t, pool, "expired-%") > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d expired keys left 10 s after the API started, want none", countKeys(t, pool, "expired-%"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := countKeys(t, pool, "fresh"); n != 1 {
		t.Errorf("%d fresh keys left, want 1", n)
	}
}

// TestKeyPrunerDeletesInChunks checks that a pass deletes every expired key, a chunk at a
// time, and passes over a key that another transaction holds instead of waiting for it.
func TestKeyPrunerDeletesInChunks(t *testing.T) {
	t.Parallel()
	_, pool, _ := openDatabase(t)
	keyFixture(t, pool, 7)
	tx, err := pool.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.Exec(`SELECT FROM idempotency_keys WHERE key = 'expired-7' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	p := newKeyPruner(pool, discard())
	p.chunk = 2
	if n := p.prune(ctx); n != 6 {
		t.Errorf("pruned %d keys, want the 6 expired ones not held by another transaction", n)
	}
	if n := countKeys(t, pool, "expired-%"); n != 1 {
		t.Errorf("%d expired keys left, want only the held one", n)
	}
	if n := countKeys(t, pool, "fresh"); n != 1 {
		t.Errorf("%d fresh keys left, want 1", n)
	}
}
