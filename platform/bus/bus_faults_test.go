//go:build faults

// Fault tests disturb the shared broker for every client: run them alone, with
// `go test -tags faults -p 1 ./...`, never in the normal suite.

package bus

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"orderflow/internal/testutil"
)

func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("rabbitmqctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %v: %v: %s", args, err, out)
	}
}

func TestFaultCloseAllConnections(t *testing.T) {
	runThroughDisruption(t, func(*Conn) {
		rabbitmqctl(t, "close_all_connections", "fault test")
	})
}

// TestFaultBrokerStopped stops the broker application for five seconds while messages are
// published and consumed.
func TestFaultBrokerStopped(t *testing.T) {
	t.Cleanup(func() {
		// Whatever happened, leave the broker running.
		_ = exec.Command("rabbitmqctl", "start_app").Run()
		_ = exec.Command("rabbitmqctl", "await_startup").Run()
	})
	runThroughDisruption(t, func(c *Conn) {
		rabbitmqctl(t, "stop_app")
		testutil.Eventually(t, 10*time.Second, "Check to report the outage", func() bool { return c.Check(context.Background()) != nil })
		go func() {
			time.Sleep(5 * time.Second)
			// t.Fatal is not allowed off the test goroutine; a failed start shows up as
			// publishing that never resumes.
			_ = exec.Command("rabbitmqctl", "start_app").Run()
		}()
	})
}
