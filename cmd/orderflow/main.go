// Command orderflow runs one of orderflow's processes: the REST API, the event worker, the
// expiry cron job, or a one-shot migration; it also asks a local process whether it is ready,
// and prints its version.
//
//	orderflow [--config DIR] api | worker | cronjob | migrate | health | version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.uber.org/dig"
	"go.uber.org/fx"

	"orderflow/configuration"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: orderflow [--config DIR] <command>

commands:
  api       serve the REST API (applies pending migrations first)
  worker    handle order events: payments, completions, notifications
  cronjob   expire orders left in processing for too long
  migrate   apply pending database migrations and exit
  health    ask this host's process (at http.address) whether it is ready; exit 0 if so
  version   print the version

The configuration directory holds instance.json and secrets.json; it defaults to
./configuration and can be set with --config or ORDERFLOW_CONFIG_DIR. Every key can be
overridden by an ORDERFLOW_* environment variable (see README).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("orderflow", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below: on stdout when asked for, on stderr after an error
	dir := fs.String("config", envOr("ORDERFLOW_CONFIG_DIR", "./configuration"), "configuration directory")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	} else if err != nil { // the flag package has said which flag is wrong
		fmt.Fprint(stderr, usage)
		return 2
	}
	// Flags end at the command, so a --config written after it lands here.
	switch {
	case fs.NArg() == 0:
		fmt.Fprintf(stderr, "orderflow: no command given\n\n%s", usage)
		return 2
	case fs.NArg() > 1:
		fmt.Fprintf(stderr, "orderflow: unexpected %q after the command %q (flags such as --config go before the command)\n\n%s", fs.Arg(1), fs.Arg(0), usage)
		return 2
	}
	cmd := fs.Arg(0)
	switch cmd {
	case "api", "worker", "cronjob":
		return serve(cmd, *dir, stderr)
	case "migrate":
		return report(stderr, cmd, migrateOnce(*dir, stdout))
	case "health":
		return report(stderr, cmd, checkHealth(*dir, stdout))
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	default:
		fmt.Fprintf(stderr, "orderflow: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// serve runs a long-lived process until SIGINT or SIGTERM.
func serve(process, dir string, stderr io.Writer) int {
	cfg, err := configuration.Load(dir)
	if err != nil {
		return report(stderr, process, err)
	}
	// Taken from here on, so that a signal that arrives while the process starts (applying
	// migrations, waiting for a lock) stops it once it has started, instead of killing it
	// where it stands.
	signals, started, release := takeSignals(process, stderr)
	defer release()
	limitMemory(cfg)
	app := fx.New(processOptions(process, cfg))
	if err := app.Err(); err != nil {
		return report(stderr, process, err)
	}
	startCtx, cancel := context.WithTimeout(context.Background(), app.StartTimeout())
	defer cancel()
	if err := app.Start(startCtx); err != nil {
		return report(stderr, process, err)
	}
	started()
	<-signals
	stopCtx, cancelStop := context.WithTimeout(context.Background(), app.StopTimeout())
	defer cancelStop()
	if err := app.Stop(stopCtx); err != nil {
		// fx returns at the deadline with its bare error, whichever hook was still running;
		// the worker's consumers end with theirs a little earlier (bus.RunConsumers).
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("stop: http.shutdownTimeout (%s), or the worker's share of it for its payments, ran out with work still running, which was cut short "+
				"(a request in flight gets no answer, a message in flight is delivered again); "+
				"if that should not happen, raise http.shutdownTimeout, and the time the orchestrator gives a stop with it: %w",
				cfg.HTTP.ShutdownTimeout, err)
		}
		return report(stderr, process, err)
	}
	return 0
}

// takeSignals takes SIGINT and SIGTERM from now on: the first one is sent on signals. A
// second one that arrives before started is called ends the process at once, with the
// status of a process killed by it, since a start that waits for a lock or for a database
// that does not answer has no bound, and would otherwise ignore every signal meanwhile.
// Once started, a second one is ignored: the stop is bounded by http.shutdownTimeout, and a
// Ctrl-C under make run gives each process two (the terminal's SIGINT, then the script's
// SIGTERM), which must not cut the worker's payments short. Call started once the start has
// succeeded, and release once done; each once.
func takeSignals(process string, stderr io.Writer) (signals <-chan os.Signal, started, release func()) {
	taken := make(chan os.Signal, 2)
	signal.Notify(taken, os.Interrupt, syscall.SIGTERM)
	first := make(chan os.Signal, 1)
	start, done := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case sig := <-taken:
			first <- sig
		case <-done:
			return
		}
		select {
		case sig := <-taken:
			select {
			case <-start:
				return
			default:
			}
			fmt.Fprintf(stderr, "orderflow %s: %s again while starting: stopped at once\n", process, sig)
			code := 1
			if s, ok := sig.(syscall.Signal); ok {
				code = 128 + int(s)
			}
			os.Exit(code)
		case <-start:
		case <-done:
		}
	}()
	return first, func() { close(start) }, func() {
		signal.Stop(taken)
		close(done)
	}
}

// report prints err as the one-line reason a command failed, and returns the exit status.
func report(stderr io.Writer, cmd string, err error) int {
	if err == nil {
		return 0
	}
	// fx wraps constructor failures in several layers naming its internals; the root cause
	// is what a user can act on.
	root := dig.RootCause(err)
	msg := strings.ReplaceAll(root.Error(), "\n", "; ")
	if errors.Is(err, context.DeadlineExceeded) && !strings.Contains(msg, "deadline") {
		msg += " (timed out)"
	}
	fmt.Fprintf(stderr, "orderflow %s: %s\n", cmd, msg)
	return 1
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// signalContext returns a context cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
