package api

import (
	"testing"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/platform/db"
)

// BenchmarkCreateOrder measures order intake through HTTP with concurrent clients, on a
// database that already holds a history of orders (an empty one misleads the planner).
//
//	go test -run '^$' -bench CreateOrder -benchtime 20000x ./api/
func BenchmarkCreateOrder(b *testing.B) {
	e := newEnv(b)
	cust, _ := e.customer()
	p1 := e.product("9.99", 1_000_000_000)
	p2 := e.product("0.25", 1_000_000_000)
	e.history(100_000, p1)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := &oas.OrderCreate{Items: items(p1, 1)}
			if i%4 == 3 {
				req = &oas.OrderCreate{Items: items(p1, 1, p2, 2)}
			}
			i++
			if _, err := cust.CreateOrder(ctx, req, oas.CreateOrderParams{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
}

// history inserts n completed one-item orders of product pid by the admin and analyzes the
// tables, as a production database would look.
func (e *env) history(n, pid int) {
	e.t.Helper()
	_, err := e.db.Exec(`
		WITH o AS (
			INSERT INTO orders (user_id, total, status, created_at, updated_at)
			SELECT $1, 9.99, 'completed', now() - interval '1 day', now() - interval '1 day'
			FROM generate_series(1, $2)
			RETURNING id
		)
		INSERT INTO order_items (order_id, product_id, quantity, price) SELECT id, $3, 1, 9.99 FROM o`,
		e.adminID, n, pid)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.db.Exec(`ANALYZE`); err != nil {
		e.t.Fatal(err)
	}
}

// BenchmarkPlaceOrderSQL measures the order transaction alone, without HTTP, JSON or
// authentication, for comparison with BenchmarkCreateOrder.
func BenchmarkPlaceOrderSQL(b *testing.B) {
	e := newEnv(b)
	_, custID := e.customer()
	p1 := e.product("9.99", 1_000_000_000)
	p2 := e.product("0.25", 1_000_000_000)
	e.history(100_000, p1)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			its := []domain.Item{{ProductID: p1, Quantity: 1}}
			if i%4 == 3 {
				its = append(its, domain.Item{ProductID: p2, Quantity: 2})
			}
			i++
			o, err := e.h.draftOrder(ctx, custID, its)
			if err != nil {
				b.Error(err)
				return
			}
			var unlock func()
			err = db.WithTx(ctx, e.client, func(tx *ent.Tx) error {
				return e.h.placeOrder(ctx, tx, custID, o, "", "", &unlock)
			})
			if unlock != nil {
				unlock()
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
}
