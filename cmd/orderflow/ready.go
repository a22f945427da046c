package main

import (
	"context"
	"log/slog"

	"go.uber.org/fx"

	"orderflow/platform/httpserver"
)

// announceReady logs one line once every start hook has run, so operators and tests can
// tell when the process is serving. It is invoked last, so its hook runs last.
func announceReady(lc fx.Lifecycle, l *slog.Logger, srv *httpserver.Server) {
	lc.Append(fx.StartHook(func(context.Context) {
		l.Info("ready", "address", srv.Addr(), "version", version, "memory_limit_mib", memoryLimit())
	}))
	lc.Append(fx.StopHook(func() { l.Info("stopping") }))
}
