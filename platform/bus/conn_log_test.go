package bus

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer that a logger may write to while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestConnLogsNameTheConnection: every process holds two connections to the broker, one
// for consuming and one for publishing, which retry and fail separately. Their log lines
// must say which connection they are about, or an operator sees each warning twice and
// cannot tell which connection is down.
func TestConnLogsNameTheConnection(t *testing.T) {
	cfg := rabbitConfig(t)
	cfg.Port = 1 // nothing listens there: every attempt fails at once
	out := &lockedBuffer{}
	c := NewConn(cfg, slog.New(slog.NewJSONHandler(out, nil)), Options{Name: "orderflow-test-publisher"})
	c.Start()
	t.Cleanup(func() { _ = c.Close() })

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
