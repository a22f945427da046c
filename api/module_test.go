package api

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/configuration"
	"orderflow/ent"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/db"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// moduleApp is the api process's app without its HTTP server: Module on cfg's database, with
// the serve mux it registers on, a discarding logger and a registry of its own.
func moduleApp(cfg *configuration.Config) fx.Option {
	return fx.Options(
		fx.Supply(cfg, discard()),
		fx.Supply(fx.Annotate(prometheus.NewRegistry(), fx.As(new(prometheus.Registerer)))),
		db.Module,
		fx.Provide(http.NewServeMux),
		Module,
	)
}

func TestModuleValidates(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	if err := fx.ValidateApp(fx.NopLogger, moduleApp(&cfg)); err != nil {
		t.Fatal(err)
	}
}

// TestModuleStartsOnEmptyDatabase boots the module on a database without tables: it applies
// the migrations, creates the admin and serves the API on the mux.
func TestModuleStartsOnEmptyDatabase(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config(t)
	cfg.Database = testenv.EmptyDatabase(t)
	var mux *http.ServeMux
	app := fxtest.New(t, moduleApp(cfg), fx.Populate(&mux))
	app.RequireStart()
	defer app.RequireStop()
	srv := httptest.NewServer(mux)
	defer srv.Close()

	anon, err := oas.NewClient(srv.URL, token(""))
	if err != nil {
		t.Fatal(err)
	}
	res, err := anon.Login(ctx, &oas.LoginRequest{Email: cfg.Admin.Email, Password: cfg.Admin.Password})
	if err != nil {
		t.Fatalf("admin cannot sign in: %v", err)
	}
	c, _ := oas.NewClient(srv.URL, token(res.Token))
	products, err := c.ListProducts(ctx, oas.ListProductsParams{})
	if err != nil || products.XTotalCount == 0 {
		t.Fatalf("seeded products: %+v, %v", products, err)
	}
	spec, err := http.Get(srv.URL + "/openapi.yaml")
	if err != nil || spec.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.yaml: %v", err)
	}
	spec.Body.Close()
}

// TestPrepareWarnsOfShippedSecrets checks that the API warns at start-up, once per key and
// naming its variable, while the signing key or the admin password is secrets.json's
// development value, and not otherwise.
func TestPrepareWarnsOfShippedSecrets(t *testing.T) {
	t.Parallel()
	cfg, pool, client := openDatabase(t)
	prepare := func(jwtSecret, adminPassword string) string {
		t.Helper()
		cfg.Auth.JWTSecret, cfg.Admin.Password = jwtSecret, adminPassword
		var logs strings.Builder
		if err := Prepare(pool, client, cfg, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatal(err)
		}
		return logs.String()
	}
	warning := func(key, env string) string {
		return `level=WARN msg="the development value shipped in secrets.json is in use; change it before the API is reachable by anyone else" key=` +
			key + " env=" + env
	}
	jwt, password := warning("auth.jwtSecret", "ORDERFLOW_AUTH_JWTSECRET"), warning("admin.password", "ORDERFLOW_ADMIN_PASSWORD")

	logs := prepare(configuration.ShippedJWTSecret, configuration.ShippedAdminPassword)
	if strings.Count(logs, jwt) != 1 || strings.Count(logs, password) != 1 {
		t.Errorf("with both shipped secrets, logs lack one warning for each:\n%s", logs)
	}
	if strings.Contains(logs, configuration.ShippedJWTSecret) || strings.Contains(logs, configuration.ShippedAdminPassword) {
		t.Errorf("a warning shows a secret:\n%s", logs)
	}
	logs = prepare("another-jwt-secret-0123456789abcdef0123", configuration.ShippedAdminPassword)
	if strings.Contains(logs, jwt) || !strings.Contains(logs, password) {
		t.Errorf("with the shipped admin password only:\n%s", logs)
	}
	if logs = prepare("another-jwt-secret-0123456789abcdef0123", "another-password"); strings.Contains(logs, "level=WARN") {
		t.Errorf("warnings with secrets of its own:\n%s", logs)
	}
}

func TestEnsureAdmin(t *testing.T) {
	t.Parallel()
	_, pool, client := openDatabase(t)
	admin := configuration.Admin{Name: "Root", Email: "Root@Example.COM", Password: "first-password"}

	read := func() (id int, name, email, role, hash string) {
		t.Helper()
		err := pool.QueryRow(`SELECT id, name, email, role, password_hash FROM users WHERE email = 'root@example.com'`).
			Scan(&id, &name, &email, &role, &hash)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := EnsureAdmin(ctx, client, admin, bcrypt.MinCost, discard()); err != nil {
		t.Fatal(err)
	}
	id, name, _, role, hash := read()
	if name != "Root" || role != "admin" || bcrypt.CompareHashAndPassword([]byte(hash), []byte("first-password")) != nil {
		t.Fatalf("created %s %s", name, role)
	}

	// Unchanged settings leave the row alone, hash included.
	if err := EnsureAdmin(ctx, client, admin, bcrypt.MinCost, discard()); err != nil {
		t.Fatal(err)
	}
	if id2, _, _, _, hash2 := read(); id2 != id || hash2 != hash {
		t.Error("a second start-up rewrote the admin")
	}

	// A new configured password and name are applied to the admin account and rehashed.
	admin.Password, admin.Name = "second-password", "Root 2"
	if err := EnsureAdmin(ctx, client, admin, bcrypt.MinCost, discard()); err != nil {
		t.Fatal(err)
	}
	id3, name, _, role, hash := read()
	if id3 != id || name != "Root 2" || role != "admin" || bcrypt.CompareHashAndPassword([]byte(hash), []byte("second-password")) != nil {
		t.Errorf("after update: %s %s", name, role)
	}

	// An account with the address that is not an admin is neither promoted nor given the
	// configured password: start-up fails, naming the address, the account and the remedy.
	if _, err := pool.Exec(`UPDATE users SET role = 'customer' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	admin.Password, admin.Name = "third-password", "Root 3"
	err := EnsureAdmin(ctx, client, admin, bcrypt.MinCost, discard())
	want := fmt.Sprintf("admin.email root@example.com belongs to user %d, who is not an admin", id)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "set admin.email (ORDERFLOW_ADMIN_EMAIL) to an address no account uses") {
		t.Errorf("EnsureAdmin with a customer's address: %v, want an error containing %q and the remedy", err, want)
	}
	if _, name4, _, role4, hash4 := read(); name4 != name || role4 != "customer" || hash4 != hash {
		t.Errorf("the customer's account was changed: %s %s, hash changed %v", name4, role4, hash4 != hash)
	}
}

// TestEnsureAdminAfterLosingTheRace starts the API while another instance (or a request)
// stores the configured address between EnsureAdmin's look-up and its insert: the account
// is then checked as if it had been there before, instead of start-up failing on the
// look-up that found nothing.
func TestEnsureAdminAfterLosingTheRace(t *testing.T) {
	t.Parallel()
	admin := configuration.Admin{Name: "Root", Email: "root@example.com", Password: "first-password"}
	for _, tc := range []struct {
		role, wantErr string
	}{
		{"admin", ""},
		{"customer", "who is not an admin"},
	} {
		t.Run(tc.role, func(t *testing.T) {
			t.Parallel()
			_, pool, client := openDatabase(t)
			hash, err := bcrypt.GenerateFromPassword([]byte(admin.Password), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			// Every insert of a user first lets the other side store the address.
			client.User.Use(func(next ent.Mutator) ent.Mutator {
				return ent.MutateFunc(func(ctx context.Context, m ent.Mutation) (ent.Value, error) {
					if m.Op().Is(ent.OpCreate) {
						if _, err := pool.ExecContext(ctx, `INSERT INTO users (name, email, password_hash, role, created_at, updated_at)
							VALUES ('Other', $1, $2, $3, now(), now())`, admin.Email, string(hash), tc.role); err != nil {
							t.Fatal(err)
						}
					}
					return next.Mutate(ctx, m)
				})
			})
			err = EnsureAdmin(ctx, client, admin, bcrypt.MinCost, discard())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("EnsureAdmin: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("EnsureAdmin: %v, want an error containing %q", err, tc.wantErr)
			}
			var name, role string
			if err := pool.QueryRow(`SELECT name, role FROM users WHERE email = $1`, admin.Email).Scan(&name, &role); err != nil {
				t.Fatal(err)
			}
			if tc.role == "admin" && name != admin.Name {
				t.Errorf("admin account named %q, want the configured %q", name, admin.Name)
			}
			if role != tc.role {
				t.Errorf("role %q, want %q", role, tc.role)
			}
		})
	}
}

// TestDatabaseUnavailable checks that requests answer 503, not 500, when PostgreSQL cannot be
// reached, and that logins that fail so take nothing from the budget of failed logins.
func TestDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	cfg := configuration.Defaults()
	cfg.Auth.JWTSecret = "orderflow-test-jwt-secret-0123456789abcdef"
	cfg.Database.Host, cfg.Database.Port = "127.0.0.1", 1 // nothing listens there
	pool, err := sql.Open("pgx", cfg.Database.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	h := NewHandler(db.NewClient(pool), pool, &cfg, discard())
	api, err := NewServer(h, cfg.HTTP.MaxBodyBytes)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()

	tok, _, err := h.Tokens().Issue(1, 0, "admin", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := oas.NewClient(srv.URL, token(tok))
	_, err = c.ListProducts(context.Background(), oas.ListProductsParams{})
	wantStatus(t, err, http.StatusServiceUnavailable)
	for range cfg.Auth.LoginAttemptsPerMinute + 1 {
		_, err = c.Login(context.Background(), &oas.LoginRequest{Email: "a@example.com", Password: "secret1"})
		wantStatus(t, err, http.StatusServiceUnavailable)
	}
}

// TestDatabaseConnectionDropped checks that a request whose database connection breaks under
// it (PostgreSQL restarted or went away) answers 503, as the contract says of an unreachable
// database, and not 500. The pool's one connection is used again within a second of its
// last use, so it is not checked before the statement is written to it.
func TestDatabaseConnectionDropped(t *testing.T) {
	t.Parallel()
	cfg, direct, _ := openDatabase(t)
	px := testutil.StartProxy(t, net.JoinHostPort(cfg.Database.Host, strconv.Itoa(cfg.Database.Port)))
	viaProxy := cfg.Database
	viaProxy.Host, viaProxy.Port = "127.0.0.1", px.Port()
	pool, err := sql.Open("pgx", viaProxy.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pool.SetMaxOpenConns(1)
	if err := EnsureAdmin(ctx, db.NewClient(direct), cfg.Admin, bcrypt.MinCost, discard()); err != nil {
		t.Fatal(err)
	}
	h := NewHandler(db.NewClient(pool), pool, cfg, discard())
	api, err := NewServer(h, cfg.HTTP.MaxBodyBytes)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	var adminID int
	if err := direct.QueryRow(`SELECT id FROM users`).Scan(&adminID); err != nil {
		t.Fatal(err)
	}
	tok, _, err := h.Tokens().Issue(adminID, 0, "admin", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := oas.NewClient(srv.URL, token(tok))
	// A dropped connection is seen as an end of file or as a reset, whichever reaches the
	// client first: several rounds make the first likely.
	for range 10 {
		px.Restore()
		if _, err := c.ListProducts(ctx, oas.ListProductsParams{}); err != nil {
			t.Fatalf("with the database there: %v", err)
		}
		px.Cut()
		_, err = c.ListProducts(ctx, oas.ListProductsParams{})
		wantStatus(t, err, http.StatusServiceUnavailable)
	}
}

// TestRequestTimeout checks that a request that runs out of time answers 503.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	srv, err := NewServer(e.h, e.cfg.HTTP.MaxBodyBytes)
	if err != nil {
		t.Fatal(err)
	}
	expired := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 0)
		defer cancel()
		srv.ServeHTTP(w, r.WithContext(ctx))
	}))
	defer expired.Close()
	c, _ := oas.NewClient(expired.URL, token(tok))
	_, err = c.ListProducts(ctx, oas.ListProductsParams{})
	wantStatus(t, err, http.StatusServiceUnavailable)
}
