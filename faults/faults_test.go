//go:build faults

// The scenarios run in this order: first those that disturb only their own processes, then
// those that stop the shared RabbitMQ or PostgreSQL.

package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/shopspring/decimal"

	"orderflow/events"
	"orderflow/internal/testutil"
	"orderflow/platform/bus"
)

// The load of every scenario: orders per second, from that many goroutines.
const (
	rate        = 30
	loadWorkers = 3
	settleTime  = 90 * time.Second
)

// TestFaultManyProcesses runs three workers and two cron jobs on one database and exchange.
func TestFaultManyProcesses(t *testing.T) {
	r := record(t)
	e := newEnv(t)
	api := e.start("api")
	for range 3 {
		e.start("worker")
	}
	for range 2 {
		e.start("cronjob")
	}
	l := e.startLoad(api, rate, loadWorkers)
	time.Sleep(15 * time.Second)
	e.conclude(l, r, 201)
}

// TestFaultWorkerKilled kills the worker with SIGKILL while payments are in flight, twice,
// and starts a new one each time.
func TestFaultWorkerKilled(t *testing.T) {
	r := record(t)
	e := newEnv(t)
	api, worker, _ := e.system()
	l := e.startLoad(api, rate, loadWorkers)
	for range 2 {
		time.Sleep(4 * time.Second)
		// Kill it while it holds payments (at 30 orders/s and 200ms each, about six).
		var inFlight float64
		for deadline := time.Now().Add(10 * time.Second); inFlight == 0 && time.Now().Before(deadline); {
			if inFlight = worker.metrics(t)["orderflow_worker_payments_in_flight"]; inFlight == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if inFlight == 0 {
			t.Fatalf("%s never had a payment in flight", worker.name)
		}
		worker.kill()
		t.Logf("killed %s with %.0f payments in flight", worker.name, inFlight)
		time.Sleep(2 * time.Second)
		worker = e.start("worker")
	}
	time.Sleep(4 * time.Second)
	e.conclude(l, r, 201)
}

// TestFaultRelayKilled kills the api, whose outbox relay publishes the OrderCreated events,
// with SIGKILL three times during the load and restarts it on the same address. A kill
// between a publish and its mark makes the relay publish the row again after the restart:
// the worker must absorb the copy.
func TestFaultRelayKilled(t *testing.T) {
	r := record(t)
	e := newEnv(t)
	api, _, _ := e.system()
	l := e.startLoad(api, rate, loadWorkers)
	for range 3 {
		time.Sleep(4 * time.Second)
		api.kill()
		api = e.startAt("api", api.addr)
	}
	time.Sleep(4 * time.Second)
	// While the api is down, requests find no listener; every answer must be a 201.
	e.conclude(l, r, 201, 0)
}

// TestFaultPoisonMessages publishes malformed JSON, an unknown event type and events about
// an unknown order straight to the exchange during the load.
func TestFaultPoisonMessages(t *testing.T) {
	r := record(t)
	e := newEnv(t)
	api, worker, _ := e.system()
	l := e.startLoad(api, rate, loadWorkers)
	time.Sleep(3 * time.Second)

	conn, err := amqp.Dial(e.cfg.RabbitMQ.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	unknownType := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"faults","type":"orderflow.order.refunded.v1",`+
		`"time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","data":{"orderId":1}}`, uuid.NewString())
	total := events.NewMoney(decimal.RequireFromString("12.50"))
	unknownCompleted := envelope(t, events.OrderCompleted{OrderID: 999_999_999, UserID: e.users[0], Total: total, CompletedAt: time.Now()})
	unknownExpired := envelope(t, events.OrderExpired{OrderID: 999_999_998, UserID: e.users[0], Total: total, ExpiredAt: time.Now(), ExpiredAfter: "3s"})
	poison := []struct {
		routingKey string
		body       string
	}{
		{events.RoutingKeyOrderCreated, `{"specversion": "1.0", "id": `}, // malformed JSON
		{events.RoutingKeyOrderCreated, `not json at all`},
		{events.RoutingKeyOrderCompleted, unknownType},
		{events.RoutingKeyOrderCompleted, unknownCompleted},
		{events.RoutingKeyOrderExpired, unknownExpired},
	}
	for _, p := range poison {
		confirm, err := ch.PublishWithDeferredConfirm(e.cfg.RabbitMQ.Exchange, p.routingKey, true, false, amqp.Publishing{
			ContentType: events.ContentType, MessageId: uuid.NewString(), Body: []byte(p.body),
		})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := confirm.WaitContext(context.Background()); !ok || err != nil {
			t.Fatalf("poison message to %s not confirmed: %v", p.routingKey, err)
		}
	}
	e.extraAcks = 2 // the events about unknown orders
	time.Sleep(8 * time.Second)
	e.conclude(l, r, 201)

	// The undecodable ones are dead-lettered, those about an unknown order acknowledged;
	// nothing stays in the queues.
	topo := bus.NewTopology(e.cfg.RabbitMQ.Exchange, 0, nil)
	count := func(queue string) int {
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
		if err != nil {
			t.Fatalf("inspect %s: %v", queue, err)
		}
		return q.Messages
	}
	want := map[string]int{bus.ConsumerOrderCreated: 2, bus.ConsumerOrderCompleted: 1, bus.ConsumerOrderExpired: 0}
	dead := 0
	for consumer, n := range want {
		queue := topo.QueueName(consumer)
		if got := count(bus.DeadLetterQueue(queue)); got != n {
			t.Errorf("%s: %d messages, want %d", bus.DeadLetterQueue(queue), got, n)
		}
		dead += n
		if got := count(queue); got != 0 {
			t.Errorf("%s: %d messages left", queue, got)
		}
	}
	if got := worker.logLines("message rejected to the dead-letter queue"); got != dead {
		t.Errorf("worker logged %d dead-lettered messages, want %d", got, dead)
	}
	r.notes += fmt.Sprintf("; %d poison: %d dead-lettered", len(poison), dead)
}

func envelope(t *testing.T, ev events.Event) string {
	t.Helper()
	env, err := events.NewEnvelope(uuid.NewString(), "faults", time.Now(), ev)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFaultSoak places orders at a steady rate for ORDERFLOW_TEST_SOAK (default 30s) at
// ORDERFLOW_TEST_SOAK_RATE orders per second (default 300, about half the intake peak that
// `make bench` measures on a 2-core machine): no error response, no growth of any
// process's goroutines or memory beyond a bound, and an empty outbox at the end.
func TestFaultSoak(t *testing.T) {
	duration := 30 * time.Second
	if v := os.Getenv("ORDERFLOW_TEST_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("ORDERFLOW_TEST_SOAK=%q: want a positive Go duration such as 5m", v)
		}
		duration = d
	}
	soakRate := 300
	if v := os.Getenv("ORDERFLOW_TEST_SOAK_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("ORDERFLOW_TEST_SOAK_RATE=%q: want a positive number of orders per second", v)
		}
		soakRate = n
	}
	r := record(t)
	r.scenario = fmt.Sprintf("Soak %s at %d/s", duration, soakRate)
	e := newEnv(t)
	api, worker, cron := e.system()
	procs := []*process{api, worker, cron}
	l := e.startLoad(api, soakRate, 4)

	// The first sample is taken once the processes have warmed up under the load.
	warmup := min(10*time.Second, duration/3)
	time.Sleep(warmup)
	type sample struct{ goroutines, rss float64 }
	take := func() []sample {
		var s []sample
		for _, p := range procs {
			m := p.metrics(t)
			s = append(s, sample{m["go_goroutines"], m["process_resident_memory_bytes"]})
		}
		return s
	}
	first := take()
	time.Sleep(duration - warmup)
	last := take()
	e.conclude(l, r, 201) // ends the load and waits until every order has ended

	// Goroutines are counted again once the work in flight has drained: a leak of anything
	// per order leaves thousands behind, while a worker that lags under load holds up to
	// its prefetch of deliveries in flight and lets them go once it has caught up. Memory is
	// compared under load; the pools and buffers of a steady load vary far less than a
	// leak per order would.
	settled := func(s []sample) bool {
		for i := range procs {
			if s[i].goroutines > first[i].goroutines+100 {
				return false
			}
		}
		return true
	}
	drained := take()
	for deadline := time.Now().Add(10 * time.Second); !settled(drained) && time.Now().Before(deadline); drained = take() {
		time.Sleep(200 * time.Millisecond)
	}
	var growth []string
	for i, p := range procs {
		a, b, c := first[i], last[i], drained[i]
		growth = append(growth, fmt.Sprintf("%s %.0f→%.0f goroutines (%.0f drained) %.0f→%.0f MiB",
			p.kind, a.goroutines, b.goroutines, c.goroutines, a.rss/(1<<20), b.rss/(1<<20)))
		if c.goroutines > a.goroutines+100 {
			t.Errorf("%s: %.0f goroutines once the orders had ended, %.0f under load", p.name, c.goroutines, a.goroutines)
		}
		if b.rss > 2*a.rss+128<<20 {
			t.Errorf("%s: resident memory grew from %.0f MiB to %.0f MiB", p.name, a.rss/(1<<20), b.rss/(1<<20))
		}
	}
	t.Log(strings.Join(growth, "; "))
	// The api reads the backlog at most once a second: give the last events that long.
	testutil.Eventually(t, 5*time.Second, "orderflow_outbox_backlog to read 0 at the end", func() bool {
		return api.metrics(t)["orderflow_outbox_backlog"] == 0
	})
}

// restartBroker makes sure, whatever the test did, that RabbitMQ runs when it ends.
func restartBroker(t *testing.T, e *env) {
	t.Cleanup(func() {
		_ = exec.Command("rabbitmqctl", "start_app").Run()
		if out, err := exec.Command("rabbitmqctl", "await_startup").CombinedOutput(); err != nil {
			t.Errorf("rabbitmqctl await_startup: %v: %s", err, out)
		}
		// A running broker can still refuse every connection, for one when it has run out
		// of file handles (see faults/README.md).
		conn, err := amqp.DialConfig(e.cfg.RabbitMQ.URL(), amqp.Config{Dial: amqp.DefaultDial(30 * time.Second)})
		if err != nil {
			t.Errorf("RabbitMQ accepts no connection after its restart: %v", err)
			return
		}
		conn.Close()
	})
}

// TestFaultBrokerConnectionsClosed closes every RabbitMQ connection abruptly, twice, during
// the load.
func TestFaultBrokerConnectionsClosed(t *testing.T) {
	r := record(t)
	e := newEnv(t)
	restartBroker(t, e)
	api, _, _ := e.system()
	l := e.startLoad(api, rate, loadWorkers)
	for range 2 {
		time.Sleep(5 * time.Second)
		command(t, "rabbitmqctl", "close_all_connections", "fault test")
	}
	time.Sleep(5 * time.Second)
	e.conclude(l, r, 201)
}

// TestFaultBrokerStopped stops the RabbitMQ application for 15 seconds during the load:
// orders are still taken (the outbox holds their events) and flow once it is back.
func TestFaultBrokerStopped(t *testing.T) {
	r := record(t)
	e := newEnv(t)
	restartBroker(t, e)
	api, worker, cron := e.system()
	l := e.startLoad(api, rate, loadWorkers)
	time.Sleep(5 * time.Second)
	command(t, "rabbitmqctl", "stop_app")
	time.Sleep(5 * time.Second)
	// Meanwhile the api and the cron job stay in service (their events wait in the outbox);
	// the worker, which can do nothing without the broker, says it is not ready.
	for _, p := range []*process{api, cron} {
		if !p.ready() {
			t.Errorf("%s is not ready while the broker is stopped", p.name)
		}
	}
	if ok, body := worker.readiness(); ok || !strings.Contains(body, `"rabbitmq":"unavailable`) {
		t.Errorf("the worker's readiness while the broker is stopped: ready %v, %q; want not ready for the broker", ok, body)
	}
	time.Sleep(10 * time.Second)
	command(t, "rabbitmqctl", "start_app")
	command(t, "rabbitmqctl", "await_startup")
	time.Sleep(5 * time.Second)
	e.conclude(l, r, 201)
	for _, p := range []*process{api, worker, cron} {
		if !p.running() || !p.ready() || !p.brokerConnected() {
			t.Errorf("%s is not ready, or not connected to the broker, after the broker came back", p.name)
		}
	}
}

// pgCluster runs pg_ctlcluster on the local cluster.
func pgCluster(t *testing.T, action string) error {
	versions, err := filepath.Glob("/etc/postgresql/*")
	if err != nil || len(versions) != 1 {
		t.Fatalf("want one PostgreSQL version under /etc/postgresql, found %v", versions)
	}
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", filepath.Base(versions[0]), "main", action).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctlcluster %s: %v: %s", action, err, out)
	}
	return nil
}

// TestFaultPostgresRestarted restarts PostgreSQL during the load: the api answers 503
// meanwhile, never 500, no order is half written, and every process reconnects by itself.
func TestFaultPostgresRestarted(t *testing.T) {
	r := record(t)
	e := newEnv(t)
	t.Cleanup(func() {
		// Whatever happened, leave PostgreSQL running (before the database is dropped).
		if exec.Command("pg_isready", "-h", "127.0.0.1", "-t", "5").Run() != nil {
			if err := pgCluster(t, "start"); err != nil {
				t.Error(err)
			}
		}
	})
	api, worker, cron := e.system()
	l := e.startLoad(api, rate, loadWorkers)
	time.Sleep(5 * time.Second)
	if err := pgCluster(t, "restart"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	// Meanwhile the api answers 503, never 500.
	e.conclude(l, r, 201, 503, 0)
	for _, p := range []*process{api, worker, cron} {
		if !p.running() || !p.ready() {
			t.Errorf("%s is not ready after PostgreSQL came back", p.name)
		}
	}
}
