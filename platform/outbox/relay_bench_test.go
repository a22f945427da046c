package outbox

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRelay measures how many events per second one relay publishes from a backlog:
//
//	go test -run '^$' -bench Relay -benchtime 3x ./platform/outbox/
func BenchmarkRelay(b *testing.B) {
	const backlog = 20000
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e := newEnv(b)
			e.cfg.Outbox.BatchSize = batch
			var elapsed time.Duration
			for range b.N {
				b.StopTimer()
				e.write(b, backlog)
				b.StartTimer()
				start := time.Now()
				r := e.startRelay(b, e.conn, nil)
				for unpublished(b, e.pool) > 0 {
					time.Sleep(5 * time.Millisecond)
				}
				elapsed += time.Since(start)
				b.StopTimer()
				_ = r.Stop(b.Context())
			}
			b.ReportMetric(float64(backlog*b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
