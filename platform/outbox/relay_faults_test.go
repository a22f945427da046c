//go:build faults

// Fault tests disturb the shared broker for every client: run them alone, with
// `go test -tags faults -p 1 ./...`, never in the normal suite.

package outbox

import (
	"context"
	"os/exec"
	"testing"
	"time"

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

	// One relay publishes in id order, so the queue holds the events oldest first.
	ch := testenv.AdminChannel(t, e.cfg.RabbitMQ)
	queue := e.conn.Topology().QueueName(bus.ConsumerOrderCompleted)
	for i, id := range ids {
		d, ok, err := ch.Get(queue, true)
		if err != nil || !ok {
			t.Fatalf("message %d: %v %v", i, ok, err)
		}
		if d.MessageId != id.String() {
			t.Fatalf("message %d is %s, want %s", i, d.MessageId, id)
		}
	}
}
