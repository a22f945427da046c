package main

import (
	"context"
	"database/sql"
	"log/slog"

	"go.uber.org/fx"

	"orderflow/api"
	"orderflow/api/docs"
	"orderflow/configuration"
	"orderflow/cronjob"
	"orderflow/platform/bus"
	"orderflow/platform/db"
	"orderflow/platform/health"
	"orderflow/platform/httpserver"
	"orderflow/platform/log"
	"orderflow/platform/metrics"
	"orderflow/platform/migrate"
	"orderflow/platform/outbox"
	"orderflow/platform/tracing"
	"orderflow/worker"
)

// processOptions is the whole fx application of one long-lived process: the platform
// modules every process shares, then the process's own module.
func processOptions(process string, cfg *configuration.Config) fx.Option {
	return fx.Options(
		fx.Supply(cfg, log.Process(process), tracing.ServiceName("orderflow-"+process)),
		log.FxLogger,
		// Stopping drains HTTP requests, consumers and the relay within one deadline.
		fx.StopTimeout(cfg.HTTP.ShutdownTimeout.D()),
		log.Module,
		tracing.Module,
		db.Module,
		metrics.Module,
		health.Module,
		fx.Options(processModules[process]...),
		// The HTTP server comes after everything its handlers use, so that it starts last and
		// stops first: the requests in flight finish while the pool and the broker are still
		// open, and the relay, stopping after them, publishes the events they committed.
		httpserver.Module,
		fx.Invoke(announceReady),
	)
}

// processModules lists what each process adds to the shared platform. The outbox relay
// comes before the process's own module so that it stops after it, publishing what the
// process wrote while draining. The worker and the cron job, which never migrate, start
// with requireMigrations.
var processModules = map[string][]fx.Option{
	"api":     {bus.Module, outbox.Module, api.Module, fx.Invoke(docs.Register)},
	"worker":  {requireMigrations, bus.Module, outbox.Module, worker.Module},
	"cronjob": {requireMigrations, bus.Module, outbox.Module, cronjob.Module},
}

// requireMigrations fails the start of the worker or the cron job when the database lacks
// a migration this binary embeds; only the api applies them (api.Prepare). It runs while the
// app is built, so before the relay, the consumers and the sweeps exist, and being a module
// of its own makes it run before the modules listed after it. It fails at once rather than
// wait for an api starting alongside to migrate: the non-zero exit is what an orchestrator
// answers with a restart (compose and `make run` start these processes after the api is
// ready), whereas a wait would need a deadline of its own and leave a process up but not
// ready, with no reason given, whenever no api is coming.
var requireMigrations = fx.Module("migrations",
	fx.Invoke(func(pool *sql.DB, log *slog.Logger) error {
		ctx := context.Background()
		waits := db.NoticeWaits(ctx, log, "check the migrations", db.StartWaitNotice)
		defer waits.Stop()
		return migrate.Require(ctx, pool, log)
	}),
)
