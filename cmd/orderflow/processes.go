package main

import (
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
// process wrote while draining.
var processModules = map[string][]fx.Option{
	"api":     {bus.Module, outbox.Module, api.Module, fx.Invoke(docs.Register)},
	"worker":  {bus.Module, outbox.Module, worker.Module},
	"cronjob": {bus.Module, outbox.Module, cronjob.Module},
}
