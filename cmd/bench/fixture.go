package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"orderflow/api/oas"
)

// catalogue is the benchmark's products and customers: ids from first to first+n-1.
type catalogue struct {
	firstProduct, products int
	firstUser, users       int
}

// The fixture's sizes: a catalogue of 1,000 products with ample stock, 1,000 customers.
const (
	fixtureProducts = 1_000
	fixtureUsers    = 1_000
	productStock    = 1_000_000_000
	productPrice    = "10.00"
)

// fixture loads the catalogue, then history old completed orders of two items each, and
// analyzes the database. A production table is never empty, and on an empty one PostgreSQL
// caches sequential-scan plans for the foreign-key checks (SELECT 1 FROM orders WHERE id = $1
// FOR KEY SHARE) that slow intake down about 3x within 30 s as the tables grow.
func (e *env) fixture(ctx context.Context, history int) (catalogue, error) {
	c := catalogue{products: fixtureProducts, users: fixtureUsers}
	err := e.pool.QueryRowContext(ctx, `
		WITH p AS (
			INSERT INTO products (name, price, stock, created_at, updated_at)
			SELECT 'Bench product ' || g, $2::numeric, $3, now(), now() FROM generate_series(1, $1) g
			RETURNING id
		) SELECT min(id) FROM p`, c.products, productPrice, productStock).Scan(&c.firstProduct)
	if err != nil {
		return c, fmt.Errorf("insert products: %w", err)
	}
	err = e.pool.QueryRowContext(ctx, `
		WITH u AS (
			INSERT INTO users (name, email, password_hash, role, created_at, updated_at)
			SELECT 'Bench customer ' || g, 'bench' || g || '@example.com', 'not-a-hash', 'customer', now(), now()
			FROM generate_series(1, $1) g
			RETURNING id
		) SELECT min(id) FROM u`, c.users).Scan(&c.firstUser)
	if err != nil {
		return c, fmt.Errorf("insert users: %w", err)
	}
	if err := e.insertOrders(ctx, c, history, "completed", 48*time.Hour); err != nil {
		return c, fmt.Errorf("insert order history: %w", err)
	}
	if _, err := e.pool.ExecContext(ctx, `VACUUM ANALYZE`); err != nil {
		return c, fmt.Errorf("analyze: %w", err)
	}
	return c, nil
}

// twoProducts draws two different products of the catalogue.
func (c catalogue) twoProducts(rng *rand.Rand) (int, int) {
	a := rng.IntN(c.products)
	b := (a + 1 + rng.IntN(c.products-1)) % c.products
	return c.firstProduct + a, c.firstProduct + b
}

// orderBody is the JSON of an order for a random customer: one of each of two products.
func (c catalogue) orderBody(rng *rand.Rand) []byte {
	p1, p2 := c.twoProducts(rng)
	user := c.firstUser + rng.IntN(c.users)
	return []byte(`{"userId":` + strconv.Itoa(user) + `,"items":[{"productId":` + strconv.Itoa(p1) +
		`,"quantity":1},{"productId":` + strconv.Itoa(p2) + `,"quantity":1}]}`)
}

// orderClient places orders as the administrator (who may order for any customer) over
// plain net/http with prepared bodies: the load generator shares the CPUs with the system
// under test, so it does as little as it can.
type orderClient struct {
	url   string
	token string
	http  *http.Client
}

// insertOrders inserts n orders of two items each for the catalogue's customers in turn,
// with the given status, created age ago.
func (e *env) insertOrders(ctx context.Context, c catalogue, n int, status string, age time.Duration) error {
	_, err := e.pool.ExecContext(ctx, `
		WITH o AS (
			INSERT INTO orders (user_id, total, status, created_at, updated_at)
			SELECT $1 + g % $2, 20.00, $6, now() - $7 * interval '1 microsecond', now() - $7 * interval '1 microsecond'
			FROM generate_series(1, $3) g
			RETURNING id
		)
		INSERT INTO order_items (order_id, product_id, quantity, price)
		SELECT o.id, $4 + (o.id * 7 + k) % $5, 1, 10.00 FROM o, generate_series(0, 1) k`,
		c.firstUser, c.users, n, c.firstProduct, c.products, status, age.Microseconds())
	return err
}

// startAPI starts `orderflow api` with the given overrides and signs the administrator in
// through the generated client.
func (e *env) startAPI(ctx context.Context, overrides map[string]string) (*process, *orderClient, error) {
	api, err := e.start(ctx, "api", overrides)
	if err != nil {
		return nil, nil, err
	}
	client, err := e.login(ctx, api)
	return api, client, err
}

// login signs the administrator in through the generated client.
func (e *env) login(ctx context.Context, api *process) (*orderClient, error) {
	c, err := oas.NewClient(api.url(), noSecurity{})
	if err != nil {
		return nil, err
	}
	res, err := c.Login(ctx, &oas.LoginRequest{Email: e.cfg.Admin.Email, Password: e.cfg.Admin.Password})
	if err != nil {
		return nil, fmt.Errorf("log in as the administrator: %w", err)
	}
	return &orderClient{
		url:   api.url() + "/api/orders",
		token: "Bearer " + res.Token,
		http: &http.Client{
			Timeout: 30 * time.Second,
			// Every client keeps its connection, at the largest level too.
			Transport: &http.Transport{MaxIdleConnsPerHost: 1 << 13, MaxConnsPerHost: 0},
		},
	}, nil
}

// create posts one order and returns an error unless it was created.
func (c *orderClient) create(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("post order: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("post order: %s: %s", resp.Status, b)
	}
	return nil
}

// noSecurity is the security source of the login call, which needs none.
type noSecurity struct{}

func (noSecurity) BearerAuth(context.Context, oas.OperationName) (oas.BearerAuth, error) {
	return oas.BearerAuth{}, fmt.Errorf("not signed in")
}
