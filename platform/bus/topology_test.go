package bus

import (
	"testing"

	"orderflow/events"
)

// TestEveryEventIsRouted: every event type has a queue among the system's, so that no event
// is unroutable (returned to its relay, its outbox row held back) because its queue was left
// out of SystemQueues.
func TestEveryEventIsRouted(t *testing.T) {
	t.Parallel()
	for _, e := range events.All() {
		routed := false
		for _, q := range SystemQueues() {
			routed = routed || q.RoutingKey == e.RoutingKey()
		}
		if !routed {
			t.Errorf("%s (routing key %s): no queue in SystemQueues is bound to it", e.Name(), e.RoutingKey())
		}
	}
}
