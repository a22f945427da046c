package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestOutageLogLinesAreSpacedAndCounted: during an outage the 503s of one cause make a line
// at most every outageLogInterval, each with the requests answered since the line before;
// another cause has lines of its own.
func TestOutageLogLinesAreSpacedAndCounted(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	o := newOutageLog(func() time.Time { return now })
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	down := errors.New("connection refused")
	for range 5 {
		o.warn(ctx, log, "database unavailable", down)
		now = now.Add(time.Second)
	}
	o.warn(ctx, log, "requests ran out of time", down)
	now = now.Add(outageLogInterval)
	o.warn(ctx, log, "database unavailable", down)

	type line struct {
		Msg      string `json:"msg"`
		Requests int    `json:"requests"`
		Error    string `json:"error"`
	}
	var got []line
	for _, s := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	want := []line{
		{"database unavailable", 1, "connection refused"},
		{"requests ran out of time", 1, "connection refused"},
		{"database unavailable", 5, "connection refused"}, // four held back, and this one
	}
	if len(got) != len(want) {
		t.Fatalf("logged %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i+1, got[i], want[i])
		}
	}
}
