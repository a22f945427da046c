package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/shopspring/decimal"

	"orderflow/ent"
	"orderflow/events"
	"orderflow/platform/db"
	"orderflow/platform/outbox"
)

// outboxWarmUp is how long the outbox benchmark writes at its rate before it measures: in
// a cold start (16 writers connecting at once) the relay's first round with events took
// 360 ms, enough to set the p99 of 20,000 events alone, and the target is for a steady rate.
const outboxWarmUp = 2 * time.Second

// runOutbox measures the delay from the commit of a transaction that wrote an event with
// outbox.Write to its delivery from a queue bound to the exchange, at a steady rate of one
// event per transaction. The relay runs in the benchmark process, as in every process that
// writes events, so that the writers' commits wake it.
func runOutbox(ctx context.Context, r *runner) (res *Result, err error) {
	res = newResult()
	e, err := r.newEnv(ctx, "outbox")
	if err != nil {
		return res, err
	}
	defer e.close()
	if _, err := e.fixture(ctx, 0); err != nil {
		return res, err
	}
	// The load starts from a checkpoint, so that it does not write out the pages that the
	// benchmarks before it left dirty, nor wait for a checkpoint that their WAL set off.
	if err := checkpoint(ctx, e.pool); err != nil {
		return res, err
	}
	stopRelay, err := e.startRelay(ctx) // it also declares the exchange bound below
	if err != nil {
		return res, err
	}
	defer stopRelay()
	rate, d := r.size.outboxRate, r.size.outboxFor
	res.setup("an outbox relay (outbox.batchSize %d, outbox.pollInterval %s) in the benchmark process, which writes the events; no orderflow process",
		e.cfg.Outbox.BatchSize, e.cfg.Outbox.PollInterval)
	res.setup("%d events/s for %s, measured after a warm-up of %s at the same rate (the writers open their connections there); one OrderCreated per transaction written with outbox.Write by 16 writers; a classic queue bound to order.created, auto-ack",
		rate, d, outboxWarmUp)
	res.setup("the load starts after a CHECKPOINT")

	conn, err := amqp.Dial(e.cfg.RabbitMQ.URL())
	if err != nil {
		return res, fmt.Errorf("connect to the broker: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return res, err
	}
	q, err := ch.QueueDeclare("", false /* durable */, true /* auto-delete */, true /* exclusive */, false /* no-wait */, nil)
	if err != nil {
		return res, fmt.Errorf("declare queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, events.RoutingKeyOrderCreated, e.exchange, false /* no-wait */, nil); err != nil {
		return res, fmt.Errorf("bind queue: %w", err)
	}
	deliveries, err := ch.Consume(q.Name, "", true /* auto-ack */, true /* exclusive */, false /* no-local */, false /* no-wait */, nil)
	if err != nil {
		return res, fmt.Errorf("consume: %w", err)
	}

	// second is the second of the measured load in which the event was due.
	type times struct {
		committed, received time.Time
		second              int
	}
	var (
		mu   sync.Mutex
		seen = map[string]*times{}
	)
	at := func(id string) *times {
		t, ok := seen[id]
		if !ok {
			t = &times{}
			seen[id] = t
		}
		return t
	}
	warmN, n := rate*int(outboxWarmUp.Seconds()), rate*int(d.Seconds())
	received := make(chan struct{}, warmN+n+1)
	go func() {
		for m := range deliveries {
			now := time.Now()
			mu.Lock()
			at(m.MessageId).received = now
			mu.Unlock()
			received <- struct{}{}
		}
	}()

	client := db.NewClient(e.pool)
	// write writes event i; the events of the warm-up are delivered but not measured.
	write := func(ctx context.Context, i int) error {
		var id string
		err := db.WithTx(ctx, client, func(tx *ent.Tx) error {
			ev := events.OrderCreated{OrderID: i + 1, UserID: 1, Total: events.NewMoney(decimal.RequireFromString("20.00")),
				Items: []events.Item{
					{ProductID: 1, Quantity: 1, Price: events.NewMoney(decimal.RequireFromString("10.00"))},
					{ProductID: 2, Quantity: 1, Price: events.NewMoney(decimal.RequireFromString("10.00"))},
				}, CreatedAt: time.Now()}
			uid, err := outbox.Write(ctx, tx, events.SourceAPI, ev, nil)
			id = uid.String()
			return err
		})
		if err != nil || i < warmN {
			return err
		}
		now := time.Now()
		mu.Lock()
		t := at(id)
		t.committed, t.second = now, (i-warmN)/rate
		mu.Unlock()
		return nil
	}

	// Pace the writes: event i is due at start + i/rate, and 16 writers take them in turn.
	due := make(chan int, warmN+n)
	var (
		wg   sync.WaitGroup
		errs errorLog
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range due {
				if err := write(ctx, i); err != nil {
					errs.add(err)
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	measured := start.Add(time.Duration(warmN) * interval)
	var cpuBefore cpuTimes
	for i := range warmN + n {
		if w := time.Until(start.Add(time.Duration(i) * interval)); w > 0 {
			time.Sleep(w)
		}
		if i == warmN {
			cpuBefore = readCPU(0)
		}
		due <- i
	}
	close(due)
	wg.Wait()
	writeTime := time.Since(measured)
	cpu := readCPU(0).sub(cpuBefore).perOp(n)
	var p phase
	errs.into(&p)
	if p.Errors > 0 {
		return res, fmt.Errorf("%d outbox writes failed, first: %s", p.Errors, p.FirstError)
	}
	got := 0
	timeout := time.After(30 * time.Second)
wait:
	for got < warmN+n {
		select {
		case <-received:
			got++
		case <-timeout:
			break wait
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var (
		lat     latencies
		seconds bySecond
	)
	for _, t := range seen {
		if !t.committed.IsZero() && !t.received.IsZero() {
			d := max(0, t.received.Sub(t.committed))
			lat = append(lat, d)
			seconds.add(t.second, d)
		}
	}
	p.Elapsed = writeTime
	p.finish(lat)
	p.SecondP99 = seconds.p99s()
	worst, over := p.secondsOver(50)
	res.setup("CPU per event: busy time of every core (/proc/stat) while the measured events were written, divided by them; of it, this process (the writers, the relay and the consumer), PostgreSQL's and RabbitMQ's processes, and the rest")
	res.Tables = append(res.Tables, Table{
		Title: "commit to delivery",
		Header: []string{"events", "written/s", "delivered", "p50 ms", "p90 ms", "p99 ms", "max ms",
			"worst second's p99", "seconds with p99 > 50 ms"},
		Rows: [][]string{{strconv.Itoa(n), num(float64(n) / writeTime.Seconds()), strconv.Itoa(got - warmN),
			num(p.P50), num(lat.quantile(0.9)), num(p.P99), num(lat.quantile(1)),
			num(worst), fmt.Sprintf("%d of %d", over, len(p.SecondP99))}},
		Data: []map[string]any{{"events": n, "warmUpEvents": warmN, "writeSeconds": writeTime.Seconds(), "delivered": got - warmN,
			"p50Ms": p.P50, "p90Ms": lat.quantile(0.9), "p99Ms": p.P99, "maxMs": lat.quantile(1), "secondP99Ms": orNulls(p.SecondP99)}},
	})
	if cpu != nil {
		res.Tables = append(res.Tables, Table{
			Title:  "CPU while the measured events were written",
			Header: []string{"CPU ms/event", "machine busy", "this process", "PostgreSQL", "RabbitMQ", "rest"},
			Rows: [][]string{{num(cpu.Machine), cpu.busy(float64(n) / writeTime.Seconds()), num(cpu.LoadGenerator),
				num(cpu.PostgreSQL), num(cpu.RabbitMQ), num(cpu.Rest)}},
			Data: []map[string]any{{"cpuPerEventMs": cpu}},
		})
	}
	// The percentiles of the delivered events say nothing of the lost ones.
	if got < warmN+n || len(lat) < n {
		return res, fmt.Errorf("%d events committed, %d delivered within 30 s", warmN+n, got)
	}
	res.target("commit-to-publish p50", p.P50, "ms", 10, false)
	res.target("commit-to-publish p99", p.P99, "ms", 50, false)
	return res, nil
}
