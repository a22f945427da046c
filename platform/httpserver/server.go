// Package httpserver runs the HTTP server of a process: the API's routes, or only the health
// and metrics endpoints of the worker and the cron job.
package httpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"orderflow/configuration"
	"orderflow/platform/log"
	"orderflow/platform/metrics"
	"orderflow/platform/tracing"
)

// Module provides the process's *http.ServeMux, on which other modules register their
// routes, and serves it on http.address from start to stop; with http.pprofAddress set it
// also serves Go's profiles there. It needs metrics.Module.
var Module = fx.Module("httpserver",
	fx.Provide(http.NewServeMux, New),
	fx.Invoke(func(*Server) {}, servePprof),
)

// Server serves a handler on the configured address.
type Server struct {
	srv *http.Server
	log *slog.Logger
	ln  net.Listener
}

// New returns a server for mux whose lifecycle is bound to lc: it listens on start, so a
// port already in use fails start-up, and drains in-flight requests on stop.
func New(lc fx.Lifecycle, cfg *configuration.Config, mux *http.ServeMux, m *metrics.HTTP, log *slog.Logger) *Server {
	s := &Server{
		srv: &http.Server{
			// Observe wraps the mux directly, so that it sees the pattern the mux matched.
			Handler: WithRequestID(tracing.Middleware(WithTimeout(Observe(log, m, mux),
				cfg.HTTP.RequestTimeout.D()))),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       cfg.HTTP.RequestTimeout.D(),
			// Give a handler's own timeout the chance to answer before the write deadline.
			WriteTimeout: cfg.HTTP.RequestTimeout.D() + 5*time.Second,
			IdleTimeout:  2 * time.Minute,
			ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		log: log,
	}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", cfg.HTTP.Address)
			if err != nil {
				return fmt.Errorf("listen on http.address %s: %w", cfg.HTTP.Address, err)
			}
			s.ln = ln
			go func() {
				if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("http server stopped", "error", err)
				}
			}()
			log.Info("http server listening", "address", ln.Addr().String())
			return nil
		},
		OnStop: func(ctx context.Context) error {
			return s.srv.Shutdown(ctx)
		},
	})
	return s
}

// Addr is the address the server listens on, once started (useful with port 0).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is the base URL of the started server, such as http://127.0.0.1:8080.
func (s *Server) URL() string { return "http://" + s.Addr() }

// WithTimeout gives every request a context that ends after d, so that database calls and
// other work stop when a request has run out of time. It does not end when the client goes
// away: the request runs to its answer, as it would have for a client that stayed, instead
// of being cut off in a database call, which costs the pool its connection (pgx closes a
// connection whose query is cancelled) just when clients give up under load. ClientGone
// tells from the context when the client left.
func WithTimeout(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(context.WithoutCancel(r.Context()), clientKey{}, r.Context())
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

type clientKey struct{}

// ClientGone returns a channel closed once the client of the request of ctx has gone away
// (or its request was answered), for work that is not begun for a client that left, such as
// a wait before anything was done. Outside WithTimeout it is ctx's own Done.
func ClientGone(ctx context.Context) <-chan struct{} {
	if client, ok := ctx.Value(clientKey{}).(context.Context); ok {
		return client.Done()
	}
	return ctx.Done()
}

// RequestIDHeader carries a request's id in and out of the API. A caller may set it to
// follow its request through the logs of every process; otherwise one is generated.
const RequestIDHeader = "X-Request-ID"

// WithRequestID gives every request an id: the caller's X-Request-ID when it is a
// reasonable token, a new random one otherwise. It is echoed in the response and stored
// in the context, where the logger and the outbox writer find it.
func WithRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !log.ValidRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(log.WithRequestID(r.Context(), id)))
	})
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Observe counts every request in the HTTP metrics and logs one line per request, with its
// request id, once it is answered: probes (/healthz, /readyz, /metrics) at debug level,
// everything else at info. A handler that panics is logged with its stack, as an error, and
// counted with status 500: its request is answered with a 500 problem, or, when the answer
// had begun, its connection is dropped, so that the client does not take a cut answer for
// a whole one.
func Observe(l *slog.Logger, m *metrics.HTTP, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r, done := m.Track(r)
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		finish := func() {
			trace.SpanFromContext(r.Context()).SetName(spanName(r.Method, done(sw.code)))
			level := slog.LevelInfo
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				level = slog.LevelDebug
			}
			l.Log(r.Context(), level, "http request",
				"method", r.Method, "path", r.URL.Path, "status", sw.code,
				"duration_ms", float64(time.Since(start).Microseconds())/1000, "bytes", sw.bytes)
		}
		defer func() {
			v := recover()
			switch {
			case v == nil:
				finish()
			case v == http.ErrAbortHandler:
				// The handler's own way to drop the connection, which net/http does quietly.
				finish()
				panic(v)
			default:
				l.ErrorContext(r.Context(), "http handler panicked", "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				answered := sw.wroteHeader
				if !answered {
					sw.Header().Set("Content-Type", "application/problem+json")
					sw.WriteHeader(http.StatusInternalServerError)
					_, _ = io.WriteString(sw, panicProblem)
				}
				sw.code = http.StatusInternalServerError
				finish()
				if answered {
					panic(http.ErrAbortHandler)
				}
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// spanName is the name of the span of a request by its route label, as OpenTelemetry
// names server spans: "{method} {route}", or the method alone for a request no route
// serves ("HTTP" for a method of the client's own), so that neither the ids in paths nor
// made-up methods make a name for every request.
func spanName(method, route string) string {
	if metrics.MethodLabel(method) != method {
		method = "HTTP"
	}
	switch {
	case route == metrics.Unmatched:
		return method
	case strings.HasPrefix(route, method+" "):
		return route // a mux pattern that names its method
	}
	return method + " " + route
}

// panicProblem answers a request whose handler panicked: the same problem as the API's other
// unexpected errors.
const panicProblem = `{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"An unexpected error occurred."}`

type statusWriter struct {
	http.ResponseWriter
	code        int
	bytes       int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
