// Package health serves /healthz (the process is alive) and /readyz (its dependencies
// answer) on the process's HTTP server.
package health

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/fx"
)

// Check is one dependency that /readyz asks. Modules contribute checks to the
// "readiness" value group with AsCheck.
type Check struct {
	Name string
	// Check returns nil when the dependency answers. An error made with Optional reports a
	// dependency that the process works without for a while: /readyz names it but still
	// answers 200, so that the process stays in service.
	Check func(ctx context.Context) error
}

// optionalError is a Check's error that leaves the process ready.
type optionalError struct{ error }

func (e optionalError) Unwrap() error { return e.error }

// Optional marks err, a Check's error, as that of a dependency the process works without for
// a while.
func Optional(err error) error {
	if err == nil {
		return nil
	}
	return optionalError{err}
}

// AsCheck annotates a constructor of a Check so that it joins the readiness group.
func AsCheck(f any) any {
	return fx.Annotate(f, fx.ResultTags(`group:"readiness"`))
}

// Module registers the two endpoints and the database readiness check.
var Module = fx.Module("health",
	fx.Provide(AsCheck(DatabaseCheck)),
	fx.Invoke(fx.Annotate(Register, fx.ParamTags(``, `group:"readiness"`))),
)

// DatabaseCheck reports whether the database answers and takes writes: one that takes none
// (a standby that the address reaches after a failover, or a database made read-only)
// refuses every write of the process, so the process is not ready.
func DatabaseCheck(pool *sql.DB) Check {
	return Check{Name: "database", Check: func(ctx context.Context) error {
		var readOnly string
		if err := pool.QueryRowContext(ctx, `SHOW transaction_read_only`).Scan(&readOnly); err != nil {
			return err
		}
		if readOnly == "on" {
			return errReadOnly
		}
		return nil
	}}
}

var errReadOnly = errors.New("the server takes no writes (transaction_read_only is on: a standby, or a database made read-only)")

// Register adds /healthz and /readyz to mux.
func Register(mux *http.ServeMux, checks []Check) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /readyz", Readiness(checks))
}

// Readiness answers 200 when every check passes within two seconds, or fails with an
// Optional error, and 503 otherwise. Its body names every check with "ok" or its error. The
// checks run at once, so that one that does not answer takes no time from the others.
func Readiness(checks []Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		errs := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			wg.Go(func() { errs[i] = c.Check(ctx) })
		}
		wg.Wait()
		status := http.StatusOK
		result := map[string]string{}
		for i, c := range checks {
			if err := errs[i]; err != nil {
				if !errors.As(err, new(optionalError)) {
					status = http.StatusServiceUnavailable
				}
				result[c.Name] = "unavailable: " + err.Error()
				continue
			}
			result[c.Name] = "ok"
		}
		writeJSON(w, status, map[string]any{"status": http.StatusText(status), "checks": result})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
