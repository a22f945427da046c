package api

import (
	"database/sql"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"orderflow/api/oas"
	"orderflow/domain"
)

// BenchmarkCreateOrder measures order intake through HTTP with concurrent clients, on a
// database that already holds a history of orders (an empty one misleads the planner):
// "spread" orders one of 100 products (every fourth order two), "hot" always the same one.
//
//	go test -run '^$' -bench CreateOrder -benchtime 20000x ./api/
func BenchmarkCreateOrder(b *testing.B) {
	e := newEnv(b)
	cust, _ := e.customer()
	products := make([]int, 100)
	for i := range products {
		products[i] = e.product("9.99", 1_000_000_000)
	}
	e.history(100_000, products[0])
	for _, bc := range []struct {
		name string
		pick func(i int) int
	}{
		{"spread", func(i int) int { return products[i%len(products)] }},
		{"hot", func(int) int { return products[0] }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var seq atomic.Int64
			b.SetParallelism(8)
			cpu := e.startCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(seq.Add(1))
					req := &oas.OrderCreate{Items: items(bc.pick(i), 1)}
					if i%4 == 3 {
						req.Items = items(bc.pick(i), 1, bc.pick(i+1)+0, 2)
						if req.Items[0].ProductId == req.Items[1].ProductId {
							req.Items = req.Items[:1]
						}
					}
					if _, err := cust.CreateOrder(ctx, req, oas.CreateOrderParams{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
			cpu.report(b)
		})
	}
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

// BenchmarkPlaceOrderSQL measures storing an order alone, without HTTP, JSON
// or authentication, for comparison with BenchmarkCreateOrder.
func BenchmarkPlaceOrderSQL(b *testing.B) {
	e := newEnv(b)
	_, custID := e.customer()
	p1 := e.product("9.99", 1_000_000_000)
	p2 := e.product("0.25", 1_000_000_000)
	e.history(100_000, p1)
	b.SetParallelism(8)
	cpu := e.startCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			its := []domain.Item{{ProductID: p1, Quantity: 1}}
			if i%4 == 3 {
				its = append(its, domain.Item{ProductID: p2, Quantity: 2})
			}
			i++
			if _, err := e.h.storeOrder(ctx, orderInput{callerID: custID, userID: custID, items: its}, "", ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
	cpu.report(b)
}

// cpuMeter measures the CPU time that this process and the PostgreSQL backends serving the
// test database spend during a benchmark: a figure that, unlike orders/s, does not depend
// on what else the machine is doing. It reads /proc, so it reports nothing elsewhere.
type cpuMeter struct {
	e          *env
	pids       []string
	self, post time.Duration
}

func (e *env) startCPU() *cpuMeter {
	m := &cpuMeter{e: e}
	// Fill the pool, so that every backend the benchmark will use exists now.
	conns := make([]*sql.Conn, 0, e.cfg.Database.MaxConns)
	for range e.cfg.Database.MaxConns {
		c, err := e.db.Conn(ctx)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	rows, err := e.db.Query(`SELECT pid::text FROM pg_stat_activity WHERE datname = current_database()`)
	if err == nil {
		for rows.Next() {
			var pid string
			if rows.Scan(&pid) == nil {
				m.pids = append(m.pids, pid)
			}
		}
		rows.Close()
	}
	m.self, m.post = m.read()
	return m
}

func (m *cpuMeter) read() (self, post time.Duration) {
	self = procCPU("self")
	for _, pid := range m.pids {
		post += procCPU(pid)
	}
	return self, post
}

func (m *cpuMeter) report(b *testing.B) {
	self, post := m.read()
	if self == 0 || post == 0 {
		return
	}
	b.ReportMetric(float64((self-m.self).Microseconds())/float64(b.N), "go-cpu-µs/order")
	b.ReportMetric(float64((post-m.post).Microseconds())/float64(b.N), "pg-cpu-µs/order")
}

// procCPU returns the user and system time of a process from /proc, or 0.
func procCPU(pid string) time.Duration {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name may contain spaces; the fields after it are fixed.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
