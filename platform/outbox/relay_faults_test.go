//go:build faults

// Fault tests disturb the shared broker for every client: run them alone, with
// `go test -tags faults -p 1 ./...`, never in the normal suite.

package outbox

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/bus"
)

// TestFaultBrokerStoppedRowsAccumulate: while the broker is stopped, writing events still
// succeeds and the rows wait; when it is back they are all published, oldest first.
func TestFaultBrokerStoppedRowsAccumulate(t *testing.T) {
	e := newEnv(t)
	t.Cleanup(func() {
		_ = exec.Command("rabbitmqctl", "start_app").Run()
		_ = exec.Command("rabbitmqctl", "await_startup").Run()
	})
	e.startRelay(t, e.conn, nil)
	if out, err := exec.Command("rabbitmqctl", "stop_app").CombinedOutput(); err != nil {
		t.Fatalf("stop_app: %v: %s", err, out)
	}
	testutil.Eventually(t, 10*time.Second, "the outage noticed", func() bool { return e.conn.Check(context.Background()) != nil })
	ids := e.write(t, 300)
	time.Sleep(3 * time.Second)
	if n := unpublished(t, e.pool); n != 300 {
		t.Fatalf("%d rows unpublished during the outage, want 300", n)
	}
	if out, err := exec.Command("rabbitmqctl", "start_app").CombinedOutput(); err != nil {
		t.Fatalf("start_app: %v: %s", err, out)
	}
	testutil.Eventually(t, 60*time.Second, "every row published", func() bool { return unpublished(t, e.pool) == 0 })

	e.wantOldestFirst(t, ids)
}

// wantOldestFirst checks that the order-completed queue holds the events ids in their order:
// one relay publishes in id order.
func (e *env) wantOldestFirst(t *testing.T, ids []uuid.UUID) {
	t.Helper()
	ch := testenv.AdminChannel(t, e.cfg.RabbitMQ)
	queue := e.conn.Topology().QueueName(bus.ConsumerOrderCompleted)
	for i, id := range ids {
		d, ok, err := ch.Get(queue, true)
		if err != nil || !ok {
			t.Fatalf("message %d: %v %v", i, ok, err)
		}
		if d.MessageId != id.String() {
			t.Fatalf("message %d is %s, want %s: not oldest first", i, d.MessageId, id)
		}
	}
}

// TestFaultResourceAlarmHoldsNoRowBack: while a memory alarm blocks publishing, the relay
// leaves the rows as they are (a refusal of the broker's, not of the rows: no attempt, error
// or delay recorded), and once it clears they are all published, oldest first.
func TestFaultResourceAlarmHoldsNoRowBack(t *testing.T) {
	e := newEnv(t)
	watermark := func(v string) {
		t.Helper()
		if out, err := exec.Command("rabbitmqctl", "set_vm_memory_high_watermark", v).CombinedOutput(); err != nil {
			t.Fatalf("set_vm_memory_high_watermark %s: %v: %s", v, err, out)
		}
	}
	out, err := exec.Command("rabbitmqctl", "eval", "vm_memory_monitor:get_vm_memory_high_watermark().").Output()
	if err != nil {
		t.Fatalf("read the memory watermark: %v", err)
	}
	before := strings.TrimSpace(string(out))
	t.Cleanup(func() { watermark(before) })
	e.startRelay(t, e.conn, nil)
	pub := bus.NewPublisher(e.conn)

	watermark("0.0001") // below what the broker uses: the alarm goes off at once
	testutil.Eventually(t, 15*time.Second, "publishing blocked", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return errors.Is(pub.Publish(ctx, bus.Message{ID: "probe", RoutingKey: "probe"}), bus.ErrBlocked)
	})
	ids := e.write(t, 300)
	time.Sleep(3 * time.Second) // several rounds, each refused
	var held int
	if err := e.pool.QueryRow(`SELECT count(*) FROM outbox
		WHERE attempts > 0 OR last_error IS NOT NULL OR next_attempt_at IS NOT NULL`).Scan(&held); err != nil {
		t.Fatal(err)
	}
	if held != 0 {
		t.Errorf("%d rows recorded as failed during the alarm, want none", held)
	}
	if n := unpublished(t, e.pool); n != 300 {
		t.Fatalf("%d rows unpublished during the alarm, want 300", n)
	}

	watermark(before)
	testutil.Eventually(t, 30*time.Second, "every row published", func() bool { return unpublished(t, e.pool) == 0 })
	e.wantOldestFirst(t, ids)
}
