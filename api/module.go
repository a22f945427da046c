package api

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"

	"go.uber.org/fx"
	"golang.org/x/crypto/bcrypt"

	"orderflow"
	"orderflow/configuration"
	"orderflow/ent"
	"orderflow/ent/user"
	"orderflow/platform/db"
	"orderflow/platform/migrate"
)

// Module is the API process: at start-up it applies the migrations and creates or updates
// the configured admin, then serves the operations under /api/ and the contract at
// /openapi.yaml on the process's *http.ServeMux.
var Module = fx.Module("api",
	fx.Provide(NewHandler),
	fx.Invoke(Prepare, Register, registerMetrics, runKeyPruner),
)

// Prepare applies pending migrations and ensures the admin account, before the server
// starts taking requests. It warns when a development secret shipped in secrets.json is
// still in use.
func Prepare(pool *sql.DB, client *ent.Client, cfg *configuration.Config, log *slog.Logger) error {
	ctx := context.Background()
	for _, k := range cfg.ShippedSecrets() {
		log.Warn("the development value shipped in "+k.File+" is in use; change it before the API is reachable by anyone else",
			"key", k.Path, "env", k.Env)
	}
	waits := db.NoticeWaits(ctx, log, "apply migrations and ensure the admin account", db.StartWaitNotice)
	defer waits.Stop()
	if _, err := migrate.Apply(ctx, pool, log); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return EnsureAdmin(ctx, client, cfg.Admin, bcrypt.DefaultCost, log)
}

// Register serves h under /api/ and the contract at /openapi.yaml on mux.
func Register(mux *http.ServeMux, h *Handler, cfg *configuration.Config) error {
	srv, err := NewServer(h, cfg.HTTP.MaxBodyBytes)
	if err != nil {
		return err
	}
	mux.Handle("/api/", srv)
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(orderflow.OpenAPI)
	})
	return nil
}

// runKeyPruner deletes the expired Idempotency-Keys while the API runs (keyPruner).
func runKeyPruner(lc fx.Lifecycle, pool *sql.DB, log *slog.Logger) {
	p := newKeyPruner(pool, log)
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error { p.Start(); return nil },
		OnStop:  p.Stop,
	})
}

// EnsureAdmin creates the configured admin account, or brings the admin account with its
// e-mail address up to date: configured name, and a new bcrypt hash only if the configured
// password no longer matches the stored one, which ends the admin's tokens issued before
// it. It never makes an existing account an admin: when the address belongs to a customer
// (who may have taken it after the administrator moved to another), start-up fails, since
// resetting that account's password and role would hand the customer's own sessions an
// admin's rights.
func EnsureAdmin(ctx context.Context, client *ent.Client, admin configuration.Admin, cost int, log *slog.Logger) error {
	email, err := normalizeEmail(admin.Email)
	if err != nil {
		return fmt.Errorf("admin.email %q: %w", admin.Email, err)
	}
	u, err := client.User.Query().Where(user.Email(email)).Only(ctx)
	if ent.IsNotFound(err) {
		// err is assigned, never declared, in this block: the look-up below decides for the
		// code after it.
		var hash []byte
		if hash, err = bcrypt.GenerateFromPassword([]byte(admin.Password), cost); err != nil {
			return fmt.Errorf("hash admin password: %w", err)
		}
		err = client.User.Create().
			SetName(admin.Name).
			SetEmail(email).
			SetPasswordHash(string(hash)).
			SetRole(user.RoleAdmin).
			Exec(ctx)
		if err == nil {
			log.Info("admin account created", "email", email)
			return nil
		}
		if db.Code(err) != db.UniqueViolation {
			return fmt.Errorf("create admin %s: %w", email, err)
		}
		// Another API instance, or a request, took the address at the same moment: the
		// account is checked as if it had been there before.
		u, err = client.User.Query().Where(user.Email(email)).Only(ctx)
	}
	if err != nil {
		return fmt.Errorf("load admin %s: %w", email, err)
	}
	if u.Role != user.RoleAdmin {
		return fmt.Errorf("admin.email %s belongs to user %d, who is not an admin, and the API makes no existing account an admin: "+
			"set admin.email (ORDERFLOW_ADMIN_EMAIL) to an address no account uses, or, if user %d is the administrator, "+
			"have an admin give it the admin role first", email, u.ID, u.ID)
	}
	// Conditional on the role, so that an account demoted meanwhile is left alone.
	upd := u.Update().Where(user.RoleEQ(user.RoleAdmin))
	changed := false
	if u.Name != admin.Name {
		upd.SetName(admin.Name)
		changed = true
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(admin.Password)) != nil {
		hash, err := bcrypt.GenerateFromPassword([]byte(admin.Password), cost)
		if err != nil {
			return fmt.Errorf("hash admin password: %w", err)
		}
		upd.SetPasswordHash(string(hash)).AddTokenVersion(1)
		changed = true
	}
	if !changed {
		return nil
	}
	if err := upd.Exec(ctx); err != nil {
		return fmt.Errorf("update admin %s (user %d): %w", email, u.ID, err)
	}
	log.Info("admin account updated", "email", email)
	return nil
}
