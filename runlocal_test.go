package orderflow_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"orderflow/configuration"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// TestRunLocalCreatesTheConfiguredDatabase: scripts/run-local.sh (make run) creates the
// database of ORDERFLOW_DATABASE_HOST, _PORT, _USER and _NAME when it is missing, on the
// configured port even when libpq's PGPORT names another. The script runs from a copy of the
// tree whose make and bin/orderflow do next to nothing, so that only its database step is
// real.
func TestRunLocalCreatesTheConfiguredDatabase(t *testing.T) {
	needClientPrograms(t)
	cfg := testenv.EmptyDatabase(t)
	db, err := sql.Open("pgx", cfg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	server := cfg
	server.Name = "postgres"
	admin, err := sql.Open("pgx", server.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `DROP DATABASE "`+cfg.Name+`"`); err != nil {
		t.Fatalf("drop the database for the script to create: %v", err)
	}

	extra := []string{"PGPORT=1"}
	if cfg.Password != "" {
		extra = append(extra, "PGPASSWORD="+cfg.Password)
	}
	// The api answers once started, so that the check for another orderflow passes.
	out, status := runLocal(t, cfg, localRun{
		api: "touch api-started; " + runsUntilStopped, health: "test -e api-started",
		interrupt: true,
	}, extra...)
	if status != 130 {
		t.Fatalf("scripts/run-local.sh exited with status %d, want 130 from Ctrl-C once all three started:\n%s", status, out)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("database %s on port %d after scripts/run-local.sh: %v", cfg.Name, cfg.Port, err)
	}
}

// TestRunLocalStopsWhenTheAPIDoesNotStart: when the api exits at start-up (a configuration
// error, say), scripts/run-local.sh (make run) stops at once with its status, instead of
// waiting for its health, starting the worker and the cron job regardless and exiting 0.
func TestRunLocalStopsWhenTheAPIDoesNotStart(t *testing.T) {
	cfg := testenv.EmptyDatabase(t)
	start := time.Now()
	out, status := runLocal(t, cfg, localRun{
		api:    "echo 'orderflow api: configuration: log.level: must be one of debug, info, warn, error' >&2; exit 1",
		health: "exit 1",
	})
	took := time.Since(start)
	if status == 0 {
		t.Errorf("scripts/run-local.sh exited 0 although the api did not start:\n%s", out)
	}
	if took > 10*time.Second {
		t.Errorf("scripts/run-local.sh took %v to give up on an api that had exited", took.Round(time.Second))
	}
	if !strings.Contains(out, "[api] orderflow api: configuration: log.level") {
		t.Errorf("output lacks the api's error:\n%s", out)
	}
	if strings.Contains(out, "started") {
		t.Errorf("the worker or the cron job started without the api:\n%s", out)
	}
}

// TestRunLocalStopsWhenTheAPINeverAnswers: when the api runs but does not answer its health
// check within 30 s (it waits for a database lock, say), scripts/run-local.sh (make run) says
// so and stops it with a failing status, instead of starting the worker and the cron job
// regardless.
func TestRunLocalStopsWhenTheAPINeverAnswers(t *testing.T) {
	t.Parallel()
	cfg := testenv.EmptyDatabase(t)
	out, status := runLocal(t, cfg, localRun{api: "exec sleep 45", health: "exit 1"})
	if status == 0 {
		t.Errorf("scripts/run-local.sh exited 0 although the api never answered:\n%s", out)
	}
	if !strings.Contains(out, "run-local: the api did not answer its health check within 30 s; its log above says why") {
		t.Errorf("output does not say that the api did not answer:\n%s", out)
	}
	if strings.Contains(out, "started worker") || strings.Contains(out, "started cronjob") {
		t.Errorf("the worker or the cron job started although the api never answered:\n%s", out)
	}
}

// TestRunLocalStopsWhenOneExits: when the api, the worker or the cron job exits, which
// nobody asked for (a crash, a configuration error, a lost database), scripts/run-local.sh
// (make run) says which one with its status, stops the other two and exits with that status,
// 1 for a 0, instead of keeping the other two running and exiting 0 once they end.
func TestRunLocalStopsWhenOneExits(t *testing.T) {
	for _, c := range []struct {
		name string
		run  localRun
		// exited is the process that exits, with exitedWith; status is the script's.
		exited     string
		exitedWith int
		status     int
	}{
		{
			name:   "the worker fails",
			run:    localRun{worker: "sleep 1; echo 'orderflow worker: connect to RabbitMQ: connection refused' >&2; exit 3"},
			exited: "worker", exitedWith: 3, status: 3,
		},
		{
			name:   "the cron job exits 0",
			run:    localRun{cronjob: "sleep 1; exit 0"},
			exited: "cronjob", exitedWith: 0, status: 1,
		},
		{
			name: "the api fails once the others run",
			run: localRun{api: "touch api-started; sleep 1.5; echo 'orderflow api: database lost' >&2; exit 2",
				health: "test -e api-started"},
			exited: "api", exitedWith: 2, status: 2,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := testenv.EmptyDatabase(t)
			if c.run.api == "" {
				c.run.api, c.run.health = "touch api-started; "+runsUntilStopped, "test -e api-started"
			}
			out, status := runLocal(t, cfg, c.run)
			if status != c.status {
				t.Errorf("scripts/run-local.sh exited with status %d, want %d:\n%s", status, c.status, out)
			}
			line := fmt.Sprintf("run-local: the %s exited with status %d;", c.exited, c.exitedWith)
			if n := strings.Count(out, "run-local: "); n != 1 || !strings.Contains(out, line) {
				t.Errorf("output does not say in one line that the %s exited, with its status:\n%s", c.exited, out)
			}
			for _, other := range []string{"api", "worker", "cronjob"} {
				if other != c.exited && !strings.Contains(out, "stopped "+other) {
					t.Errorf("the %s was not stopped:\n%s", other, out)
				}
			}
		})
	}
}

// TestRunLocalStopsAllThreeOnCtrlC: Ctrl-C stops the api, the worker and the cron job, and
// scripts/run-local.sh (make run) exits with the status of a shell stopped by it, 130,
// without reporting any of them as exited on its own.
func TestRunLocalStopsAllThreeOnCtrlC(t *testing.T) {
	cfg := testenv.EmptyDatabase(t)
	out, status := runLocal(t, cfg, localRun{
		api: "touch api-started; " + runsUntilStopped, health: "test -e api-started",
		interrupt: true,
	})
	if status != 130 {
		t.Errorf("scripts/run-local.sh exited with status %d after Ctrl-C, want 130:\n%s", status, out)
	}
	for _, name := range []string{"api", "worker", "cronjob"} {
		if !strings.Contains(out, "stopped "+name) {
			t.Errorf("Ctrl-C did not stop the %s:\n%s", name, out)
		}
	}
	if strings.Contains(out, "exited") {
		t.Errorf("a process stopped by Ctrl-C is reported as exited:\n%s", out)
	}
}

// TestRunLocalAsksTheAPIItStarted: scripts/run-local.sh (make run) starts the api on
// 127.0.0.1:8080 whatever ORDERFLOW_HTTP_ADDRESS the shell exports, and waits for the health
// of that api, not of the exported address.
func TestRunLocalAsksTheAPIItStarted(t *testing.T) {
	cfg := testenv.EmptyDatabase(t)
	out, status := runLocal(t, cfg, localRun{
		api:       "touch api-started; " + runsUntilStopped,
		health:    `test -e api-started && test "$ORDERFLOW_HTTP_ADDRESS" = 127.0.0.1:8080`,
		interrupt: true,
	}, "ORDERFLOW_HTTP_ADDRESS=127.0.0.1:9999")
	if status != 130 {
		t.Fatalf("scripts/run-local.sh exited with status %d, want 130 from Ctrl-C once all three started:\n%s", status, out)
	}
	if !strings.Contains(out, "started worker") {
		t.Errorf("the worker was not started while the api it started answered on 127.0.0.1:8080:\n%s", out)
	}
}

// TestRunLocalRefusesAnAddressAnotherOrderflowServes: when an orderflow already answers on
// 127.0.0.1:8080 (the compose file's api publishes that port), the api that
// scripts/run-local.sh (make run) starts cannot listen there and exits, while the health
// check, answered by the other one, would pass: the worker and the cron job would then run
// without their api, and requests would go to the other one. The script says so and stops
// before it starts anything.
func TestRunLocalRefusesAnAddressAnotherOrderflowServes(t *testing.T) {
	cfg := testenv.EmptyDatabase(t)
	out, status := runLocal(t, cfg, localRun{
		api:    "sleep 1; echo 'orderflow api: listen on http.address 127.0.0.1:8080: bind: address already in use' >&2; exit 1",
		health: `test "$ORDERFLOW_HTTP_ADDRESS" = 127.0.0.1:8080`,
	})
	if status == 0 {
		t.Errorf("scripts/run-local.sh exited 0 although another orderflow serves 127.0.0.1:8080:\n%s", out)
	}
	if strings.Contains(out, "started") {
		t.Errorf("the worker or the cron job started without their api:\n%s", out)
	}
	if !strings.Contains(out, "127.0.0.1:8080") {
		t.Errorf("output does not name the address in use:\n%s", out)
	}
}

// localRun is what the fake bin/orderflow of runLocal does: the shell commands it runs for
// "orderflow api", "orderflow worker", "orderflow cronjob" and "orderflow health". A worker
// or cron job left empty is runsUntilStopped.
type localRun struct {
	api, worker, cronjob, health string
	// interrupt sends the script SIGINT, as Ctrl-C in its terminal does, once the api, the
	// worker and the cron job have printed "started". They ignore that SIGINT, as a shell's
	// background processes do.
	interrupt bool
}

// runsUntilStopped prints "started <command>", runs until it is sent SIGTERM and then prints
// "stopped <command>" and exits 0, as the processes do. It ends too when the script is gone,
// so that a run the test kills leaves nothing behind.
const runsUntilStopped = `trap 'echo "stopped $1"; exit 0' TERM; echo "started $1"; ` +
	`while kill -0 $PPID 2>/dev/null; do sleep 0.1; done`

// needClientPrograms skips the test when PostgreSQL's client programs are missing:
// scripts/run-local.sh (make run) needs psql and createdb, which a host whose servers run in
// Docker need not have. The README lists them among make run's prerequisites.
func needClientPrograms(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"psql", "createdb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("scripts/run-local.sh (make run) needs %s, from PostgreSQL's client programs (Debian: postgresql-client): %v", tool, err)
		}
	}
}

// runLocal runs scripts/run-local.sh from a copy of the tree whose make does nothing and
// whose bin/orderflow is the shell script of r, for database d, with the extra variables,
// and returns what it printed and its exit status. The run fails the test when it lasts
// more than a minute.
func runLocal(t *testing.T, d configuration.Database, r localRun, extra ...string) (string, int) {
	t.Helper()
	needClientPrograms(t)
	script, err := os.ReadFile(filepath.Join("scripts", "run-local.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if r.worker == "" {
		r.worker = runsUntilStopped
	}
	if r.cronjob == "" {
		r.cronjob = runsUntilStopped
	}
	tree := t.TempDir()
	for path, text := range map[string]string{
		"scripts/run-local.sh": string(script),
		"bin/orderflow": "#!/bin/sh\ncase \"$1\" in\napi) " + r.api + " ;;\nworker) " + r.worker + " ;;\n" +
			"cronjob) " + r.cronjob + " ;;\nhealth) " + r.health + " ;;\nesac\n",
		"bin/make": "#!/bin/sh\nexit 0\n",
	} {
		if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, path), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(tree, "scripts", "run-local.sh"))
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Join(tree, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"ORDERFLOW_DATABASE_HOST="+d.Host,
		"ORDERFLOW_DATABASE_PORT="+strconv.Itoa(d.Port),
		"ORDERFLOW_DATABASE_USER="+d.User,
		"ORDERFLOW_DATABASE_NAME="+d.Name)
	cmd.Env = append(cmd.Env, extra...)
	out := &interrupting{cmd: cmd}
	if r.interrupt {
		out.after = []string{"started api", "started worker", "started cronjob"}
	}
	cmd.Stdout, cmd.Stderr = out, out
	// A process the script leaves behind would keep its output open.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("scripts/run-local.sh still ran after a minute:\n%s", out.String())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("scripts/run-local.sh: %v\n%s", err, out.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// interrupting collects the output of cmd and sends cmd SIGINT once it contains every line
// of after, if any.
type interrupting struct {
	testutil.Buffer
	cmd   *exec.Cmd
	after []string
	once  sync.Once
}

func (w *interrupting) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	out := w.String()
	for _, line := range w.after {
		if !strings.Contains(out, line) {
			return n, err
		}
	}
	if len(w.after) > 0 {
		w.once.Do(func() { _ = w.cmd.Process.Signal(os.Interrupt) })
	}
	return n, err
}
