package health

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

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
