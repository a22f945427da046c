package log_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"orderflow/configuration"
	"orderflow/platform/log"
)

func TestRequestIDOnEveryLineOfTheRequest(t *testing.T) {
	var buf bytes.Buffer
	l, err := log.New(&buf, configuration.Log{Level: "info", Format: "json"}, "api")
	if err != nil {
		t.Fatal(err)
	}
	ctx := log.WithRequestID(context.Background(), "req-1")
	l.With("component", "orders").InfoContext(ctx, "order created")
	l.Info("no request")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	var first, second map[string]any
	_ = json.Unmarshal(lines[0], &first)
	_ = json.Unmarshal(lines[1], &second)
	if first["request_id"] != "req-1" || first["process"] != "api" || first["component"] != "orders" {
		t.Errorf("first line = %v", first)
	}
	if _, ok := second["request_id"]; ok {
		t.Errorf("line without a request carries one: %v", second)
	}
}

func TestInvalidSettings(t *testing.T) {
	for _, cfg := range []configuration.Log{{Level: "loud", Format: "json"}, {Level: "info", Format: "xml"}} {
		if _, err := log.New(&bytes.Buffer{}, cfg, ""); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestDurationsAsText: a duration is written as Go's duration text, as the configuration
// spells it and the text format shows it, not as a number of nanoseconds.
func TestDurationsAsText(t *testing.T) {
	var buf bytes.Buffer
	l, err := log.New(&buf, configuration.Log{Level: "info", Format: "json"}, "worker")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("rabbitmq unavailable", "retry_in", 5*time.Second, slog.Duration("duration", 1500*time.Microsecond))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["retry_in"] != "5s" || line["duration"] != "1.5ms" {
		t.Errorf("retry_in %v, duration %v; want 5s and 1.5ms:\n%s", line["retry_in"], line["duration"], buf.String())
	}
}
