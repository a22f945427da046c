package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"go.uber.org/fx"

	"orderflow/configuration"
)

// servePprof serves Go's runtime profiles under /debug/pprof/ on http.pprofAddress, a
// listener of its own so that they are never reachable through the API's address. An empty
// address (the default) serves nothing.
func servePprof(lc fx.Lifecycle, cfg *configuration.Config, log *slog.Logger) {
	addr := cfg.HTTP.PprofAddress
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No write timeout: a CPU profile or a trace answers after the seconds it was asked for.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on http.pprofAddress %s: %w", addr, err)
			}
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("pprof server stopped", "error", err)
				}
			}()
			log.Warn("serving profiles; keep http.pprofAddress unreachable from outside",
				"address", ln.Addr().String())
			return nil
		},
		// Profiles in progress are cut off: they are not worth delaying a stop for.
		OnStop: func(context.Context) error { return srv.Close() },
	})
}
