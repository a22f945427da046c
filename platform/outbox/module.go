package outbox

import (
	"context"
	"database/sql"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"orderflow/configuration"
	"orderflow/platform/bus"
)

// Module runs the relay in every process that writes events. It needs the *sql.DB of
// db.Module, the *bus.Publisher of bus.Module, *configuration.Config, *slog.Logger and a
// prometheus.Registerer for its metrics. The relay starts with the app and stops (finishing
// its round) before the bus connection closes.
var Module = fx.Module("outbox",
	fx.Invoke(RegisterRelay),
	fx.Invoke(func(reg prometheus.Registerer, pool *sql.DB, log *slog.Logger) error {
		return reg.Register(NewBacklogCollector(pool, log))
	}),
)

// RegisterRelay creates the relay and ties it to the app's lifecycle.
func RegisterRelay(lc fx.Lifecycle, pool *sql.DB, cfg *configuration.Config, pub *bus.Publisher, log *slog.Logger) *Relay {
	r := NewRelay(pool, pub, cfg.Outbox, log)
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error { r.Start(); return nil },
		OnStop:  r.Stop,
	})
	return r
}
