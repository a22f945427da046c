package api

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// outageLogInterval is the least time between two lines of an outageLog about one cause.
const outageLogInterval = 10 * time.Second

// outageLog logs the 503s that one cause (the database unavailable, requests out of time)
// brings about at most once per outageLogInterval, each line with the number of requests
// answered so since the line before, so that an outage under load does not write a line per
// request.
type outageLog struct {
	mu    sync.Mutex
	now   func() time.Time
	last  map[string]time.Time
	since map[string]int
}

func newOutageLog(now func() time.Time) *outageLog {
	return &outageLog{now: now, last: map[string]time.Time{}, since: map[string]int{}}
}

// warn counts a request answered 503 for msg, and logs msg with the count and err unless a
// line about msg was logged within outageLogInterval.
func (o *outageLog) warn(ctx context.Context, log *slog.Logger, msg string, err error) {
	o.mu.Lock()
	o.since[msg]++
	now := o.now()
	if last, ok := o.last[msg]; ok && now.Sub(last) < outageLogInterval {
		o.mu.Unlock()
		return
	}
	n := o.since[msg]
	o.last[msg], o.since[msg] = now, 0
	o.mu.Unlock()
	log.WarnContext(ctx, msg, slog.Int("requests", n), slog.Any("error", err))
}
