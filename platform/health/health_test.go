package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"orderflow/internal/testenv"
)

// TestDatabaseCheckWantsWrites: a database that answers but takes no writes, as a standby,
// leaves the process not ready.
func TestDatabaseCheckWantsWrites(t *testing.T) {
	t.Parallel()
	pool := testenv.Pool(t, testenv.EmptyDatabase(t))
	pool.SetMaxOpenConns(1)
	check := DatabaseCheck(pool)
	if err := check.Check(context.Background()); err != nil {
		t.Fatalf("check of a database that takes writes: %v", err)
	}
	// The pool's one session now refuses writes, as a standby's would.
	if _, err := pool.Exec(`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`); err != nil {
		t.Fatal(err)
	}
	if err := check.Check(context.Background()); !errors.Is(err, errReadOnly) {
		t.Errorf("check of a read-only session: %v, want %v", err, errReadOnly)
	}
}

// TestReadinessChecksDoNotWaitForEachOther: a dependency that does not answer is reported
// as such, and the others are still asked and reported as they are, not as the time the
// first one took.
func TestReadinessChecksDoNotWaitForEachOther(t *testing.T) {
	hangs := Check{Name: "database", Check: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	answers := Check{Name: "broker", Check: func(ctx context.Context) error { return ctx.Err() }}
	rec := httptest.NewRecorder()
	Readiness([]Check{hangs, answers}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))

	var body struct{ Checks map[string]string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if rec.Code != http.StatusServiceUnavailable || body.Checks["database"] != "unavailable: context deadline exceeded" {
		t.Errorf("status %d, database %q; want 503 and the database unavailable", rec.Code, body.Checks["database"])
	}
	if body.Checks["broker"] != "ok" {
		t.Errorf("broker %q, want ok: it answered, after the database had taken the whole time", body.Checks["broker"])
	}
}
