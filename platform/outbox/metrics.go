package outbox

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// backlogReadInterval is the least time between two reads of the backlog from the database.
// Scrapes in between report the last reading, so that frequent scrapes (several Prometheus
// servers, a dashboard polling) do not count a large backlog over and over: counting
// 100,000 waiting events takes PostgreSQL tens of milliseconds.
const backlogReadInterval = time.Second

// backlog reports, at each scrape, how many events wait in the outbox and how old the
// oldest of them is: the two figures that tell a stuck relay or an unreachable broker.
type backlog struct {
	pool  *sql.DB
	log   *slog.Logger
	count *prometheus.Desc
	age   *prometheus.Desc
	up    *prometheus.Desc

	mu   sync.Mutex // held while reading, so that concurrent scrapes read once
	last backlogReading
}

// backlogReading is one read of the backlog.
type backlogReading struct {
	at     time.Time
	events int64
	age    float64
	err    error
}

// NewBacklogCollector returns the collector of the outbox backlog of pool's database. A
// reading that fails is reported as orderflow_outbox_backlog_scrape_success 0, and its error
// logged.
func NewBacklogCollector(pool *sql.DB, log *slog.Logger) prometheus.Collector {
	return &backlog{
		pool:  pool,
		log:   log,
		count: prometheus.NewDesc("orderflow_outbox_backlog", "Events written but not yet published (read at most once a second).", nil, nil),
		age:   prometheus.NewDesc("orderflow_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished event (0 when none; read at most once a second).", nil, nil),
		up:    prometheus.NewDesc("orderflow_outbox_backlog_scrape_success", "1 if the backlog could be read from the database.", nil, nil),
	}
}

func (b *backlog) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.count
	ch <- b.age
	ch <- b.up
}

func (b *backlog) Collect(ch chan<- prometheus.Metric) {
	r := b.read()
	if r.err != nil {
		ch <- prometheus.MustNewConstMetric(b.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(b.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(b.count, prometheus.GaugeValue, float64(r.events))
	ch <- prometheus.MustNewConstMetric(b.age, prometheus.GaugeValue, max(r.age, 0))
}

// read returns the last reading if it is recent, and reads the backlog otherwise.
func (b *backlog) read() backlogReading {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.last.at) < backlogReadInterval { // never, before the first reading
		return b.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := backlogReading{}
	r.err = b.pool.QueryRowContext(ctx, `SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)
		FROM outbox WHERE published_at IS NULL`).Scan(&r.events, &r.age)
	r.at = time.Now()
	b.last = r
	if r.err != nil {
		b.log.Warn("read the outbox backlog for /metrics", "error", r.err)
	}
	return r
}
