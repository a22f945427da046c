package bus

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"orderflow/internal/testutil"
)

// TestConnLogsNameTheConnection: every process holds two connections to the broker, one
// for consuming and one for publishing, which retry and fail separately. Their log lines
// must say which connection they are about, or an operator sees each warning twice and
// cannot tell which connection is down.
func TestConnLogsNameTheConnection(t *testing.T) {
	out := unreachableConn(t, "orderflow-test-publisher")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "rabbitmq unavailable") {
		if time.Now().After(deadline) {
			t.Fatalf("no \"rabbitmq unavailable\" line within 5 s; log:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.Contains(line, `"connection":"orderflow-test-publisher"`) {
			t.Errorf("log line does not name its connection: %s", line)
		}
	}
}

// TestConnSpacesItsOutageWarnings: a broker outage is logged at its first failed attempt and
// then once a minute, not at every attempt (every 5 s once the back-off is at its longest).
func TestConnSpacesItsOutageWarnings(t *testing.T) {
	t.Parallel()
	out := unreachableConn(t, "orderflow-test")
	time.Sleep(3 * time.Second) // attempts after 0.1, 0.2, 0.4, 0.8 and 1.6 s
	if n := strings.Count(out.String(), `"msg":"rabbitmq unavailable"`); n != 1 {
		t.Errorf("%d warnings in the outage's first 3 s, want the first attempt's; log:\n%s", n, out.String())
	}
}

// unreachableConn starts a Conn named name to a port where nothing listens, so that every
// attempt fails at once, and returns its JSON log.
func unreachableConn(t *testing.T, name string) *testutil.Buffer {
	t.Helper()
	cfg := rabbitConfig(t)
	cfg.Port = 1
	out := &testutil.Buffer{}
	c := NewConn(cfg, slog.New(slog.NewJSONHandler(out, nil)), Options{Name: name})
	c.Start()
	t.Cleanup(func() { _ = c.Close() })
	return out
}
