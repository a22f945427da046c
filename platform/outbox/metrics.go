package outbox

import (
	"context"
	"database/sql"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// backlog reports, at each scrape, how many events wait in the outbox and how old the
// oldest of them is: the two figures that tell a stuck relay or an unreachable broker.
type backlog struct {
	pool  *sql.DB
	count *prometheus.Desc
	age   *prometheus.Desc
	up    *prometheus.Desc
}

// NewBacklogCollector returns the collector of the outbox backlog of pool's database.
func NewBacklogCollector(pool *sql.DB) prometheus.Collector {
	return &backlog{
		pool:  pool,
		count: prometheus.NewDesc("orderflow_outbox_backlog", "Events written but not yet published.", nil, nil),
		age:   prometheus.NewDesc("orderflow_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished event (0 when none).", nil, nil),
		up:    prometheus.NewDesc("orderflow_outbox_backlog_scrape_success", "1 if the backlog could be read from the database.", nil, nil),
	}
}

func (b *backlog) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.count
	ch <- b.age
	ch <- b.up
}

func (b *backlog) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n int64
	var age float64
	err := b.pool.QueryRowContext(ctx, `SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)
		FROM outbox WHERE published_at IS NULL`).Scan(&n, &age)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(b.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(b.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(b.count, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(b.age, prometheus.GaugeValue, max(age, 0))
}
