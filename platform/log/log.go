// Package log builds the process logger from the log section of the configuration.
package log

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"orderflow/configuration"
)

// Module provides the process's *slog.Logger and routes fx's own events through it at
// debug level, so a normal start-up prints only the process's own lines.
var Module = fx.Module("log",
	fx.Provide(func(cfg *configuration.Config, p Process) (*slog.Logger, error) {
		return New(os.Stderr, cfg.Log, string(p))
	}),
)

// FxLogger is the fx.WithLogger option that sends fx's events to the process logger at
// debug level; a start-up failure is reported once, by the command, as one line.
var FxLogger = fx.WithLogger(func(l *slog.Logger) fxevent.Logger {
	fl := &fxevent.SlogLogger{Logger: l}
	fl.UseLogLevel(slog.LevelDebug)
	fl.UseErrorLevel(slog.LevelDebug)
	return fl
})

// Process names the running process ("api", "worker", "cronjob"); every log line carries it.
type Process string

// New returns a logger writing to w in the configured format and level, with a "process"
// attribute on every line and a "request_id" attribute on lines logged with a context
// that carries one (see WithRequestID).
func New(w io.Writer, cfg configuration.Log, process string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(cfg.Format) {
	case "json":
		// JSON would write a duration as a number of nanoseconds ("retry_in":5000000000);
		// its text ("5s"), as in the configuration and the text format, reads at a glance.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log.format: must be json or text, got %q", cfg.Format)
	}
	l := slog.New(contextHandler{h})
	if process != "" {
		l = l.With("process", process)
	}
	return l, nil
}
