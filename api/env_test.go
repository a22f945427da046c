package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/configuration"
	"orderflow/ent"
	"orderflow/internal/testenv"
	"orderflow/platform/db"
)

// env is one API served by httptest on its own database.
type env struct {
	t       testing.TB
	cfg     *configuration.Config
	db      *sql.DB
	client  *ent.Client
	h       *Handler
	srv     *httptest.Server
	admin   *oas.Client
	adminID int
}

var seq atomic.Int64

// openDatabase gives the test a fresh database with the migrations applied, its
// configuration, and a pool and client on it that close when the test ends.
func openDatabase(t testing.TB) (*configuration.Config, *sql.DB, *ent.Client) {
	t.Helper()
	cfg := testenv.Config(t)
	pool := testenv.Pool(t, cfg.Database)
	return cfg, pool, db.NewClient(pool)
}

// newEnv serves the API on a fresh database whose admin is cfg.Admin, with cheap password
// hashing.
func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvWith(t, nil, bcrypt.MinCost)
}

// newEnvWith is newEnv with the configuration changed by adjust (if not nil) and passwords
// hashed at the given bcrypt cost.
func newEnvWith(t testing.TB, adjust func(*configuration.Config), cost int) *env {
	t.Helper()
	cfg, pool, client := openDatabase(t)
	if adjust != nil {
		adjust(cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	if err := EnsureAdmin(context.Background(), client, cfg.Admin, cost, log); err != nil {
		t.Fatal(err)
	}
	h := NewHandler(client, pool, cfg, log)
	h.bcryptCost = cost
	mux := http.NewServeMux()
	if err := Register(mux, h, cfg); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &env{t: t, cfg: cfg, db: pool, client: client, h: h, srv: srv}
	e.admin = e.login(cfg.Admin.Email, cfg.Admin.Password)
	me, err := client.User.Query().Only(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.adminID = me.ID
	return e
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// secondInstance serves the API a second time on the same database, as another process
// would, and returns a client for it that sends tok.
func (e *env) secondInstance(tok string) *oas.Client {
	e.t.Helper()
	h := NewHandler(e.client, e.db, e.cfg, e.h.log)
	srv, err := NewServer(h, e.cfg.HTTP.MaxBodyBytes)
	if err != nil {
		e.t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	e.t.Cleanup(ts.Close)
	client, err := oas.NewClient(ts.URL, token(tok), oas.WithClient(ts.Client()))
	if err != nil {
		e.t.Fatal(err)
	}
	return client
}

// token is a fixed bearer token as a SecuritySource.
type token string

func (tk token) BearerAuth(context.Context, oas.OperationName) (oas.BearerAuth, error) {
	return oas.BearerAuth{Token: string(tk)}, nil
}

// clientWith returns a client that sends tok.
func (e *env) clientWith(tok string) *oas.Client {
	e.t.Helper()
	c, err := oas.NewClient(e.srv.URL, token(tok), oas.WithClient(e.srv.Client()))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// login signs in and returns a client that sends the token.
func (e *env) login(email, password string) *oas.Client {
	e.t.Helper()
	return e.clientWith(e.loginToken(email, password))
}

// loginToken signs in and returns the token.
func (e *env) loginToken(email, password string) string {
	e.t.Helper()
	res, err := e.clientWith("").Login(context.Background(), &oas.LoginRequest{Email: email, Password: password})
	if err != nil {
		e.t.Fatalf("login %s: %v", email, err)
	}
	return res.Token
}

// customer creates a customer through the API and signs in as it.
func (e *env) customer() (*oas.Client, int) {
	e.t.Helper()
	tok, id := e.customerToken()
	return e.clientWith(tok), id
}

// customerToken creates a customer through the API and returns its token.
func (e *env) customerToken() (string, int) {
	e.t.Helper()
	n := seq.Add(1)
	email := fmt.Sprintf("customer%d@example.com", n)
	res, err := e.admin.CreateUser(context.Background(), &oas.UserCreate{
		Name: fmt.Sprintf("Customer %d", n), Email: email, Password: "secret1",
	})
	if err != nil {
		e.t.Fatalf("create customer: %v", err)
	}
	return e.loginToken(email, "secret1"), res.Response.ID
}

// product creates a product through the API.
func (e *env) product(price string, stock int) int {
	e.t.Helper()
	res, err := e.admin.CreateProduct(context.Background(), &oas.ProductInput{
		Name:  fmt.Sprintf("Product %d", seq.Add(1)),
		Price: money(price),
		Stock: stock,
	})
	if err != nil {
		e.t.Fatalf("create product: %v", err)
	}
	return res.Response.ID
}

// stock reads a product's stock from the database.
func (e *env) stock(id int) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(`SELECT stock FROM products WHERE id = $1`, id).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// outboxTypes returns the event types of the outbox rows about an order, oldest first.
func (e *env) outboxTypes(orderID int) []string {
	e.t.Helper()
	rows, err := e.db.Query(`SELECT event_type FROM outbox WHERE (payload->'data'->>'orderId')::int = $1 ORDER BY id`, orderID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// do sends a raw request, for what the generated client cannot send.
func (e *env) do(method, path, tok, contentType, body string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	return res
}

// adminToken signs in as the admin and returns the raw token.
func (e *env) adminToken() string {
	e.t.Helper()
	res, err := e.clientWith("").Login(context.Background(), &oas.LoginRequest{Email: e.cfg.Admin.Email, Password: e.cfg.Admin.Password})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Token
}

func decimalOf(t *testing.T, s string) decimal.Decimal {
	t.Helper()
	d, err := decimal.NewFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func decimalString(m oas.Money) string { return decimal.Decimal(m).String() }

func money(s string) oas.Money { return oas.Money(decimal.RequireFromString(s)) }

func moneyEq(m oas.Money, s string) bool {
	return decimal.Decimal(m).Equal(decimal.RequireFromString(s))
}

// wantStatus fails unless err is a problem answer with the given status.
func wantStatus(t *testing.T, err error, status int) *oas.Problem {
	t.Helper()
	var pe *oas.ErrorStatusCode
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v, want a %d problem", err, status)
	}
	if pe.StatusCode != status || pe.Response.Status != status {
		t.Fatalf("got %d (%+v), want %d", pe.StatusCode, pe.Response, status)
	}
	if pe.Response.Title == "" || pe.Response.Type == "" {
		t.Fatalf("problem without type or title: %+v", pe.Response)
	}
	return &pe.Response
}

// wantField fails unless p lists field among its errors.
func wantField(t *testing.T, p *oas.Problem, field string) {
	t.Helper()
	for _, f := range p.Errors {
		if f.Field == field {
			return
		}
	}
	t.Fatalf("problem %+v does not name field %q", p, field)
}

var ctx = context.Background()
