package orderflow_test

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"orderflow/configuration"
	"orderflow/internal/testenv"
)

// TestRunLocalCreatesTheConfiguredDatabase: scripts/run-local.sh (make run) creates the
// database of ORDERFLOW_DATABASE_HOST, _PORT, _USER and _NAME when it is missing, on the
// configured port even when libpq's PGPORT names another. The script runs from a copy of the
// tree whose make and bin/orderflow do next to nothing, so that only its database step is
// real.
func TestRunLocalCreatesTheConfiguredDatabase(t *testing.T) {
	for _, tool := range []string{"psql", "createdb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("scripts/run-local.sh (make run) needs %s, from postgresql-client: %v", tool, err)
		}
	}
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
	if out, err := runLocal(t, cfg, "touch api-started; sleep 1", "test -e api-started", extra...); err != nil {
		t.Fatalf("scripts/run-local.sh: %v\n%s", err, out)
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
	out, err := runLocal(t, cfg,
		"echo 'orderflow api: configuration: log.level: must be one of debug, info, warn, error' >&2; exit 1",
		"exit 1")
	took := time.Since(start)
	if err == nil {
		t.Errorf("scripts/run-local.sh exited 0 although the api did not start:\n%s", out)
	}
	if took > 10*time.Second {
		t.Errorf("scripts/run-local.sh took %v to give up on an api that had exited", took.Round(time.Second))
	}
	if !strings.Contains(string(out), "[api] orderflow api: configuration: log.level") {
		t.Errorf("output lacks the api's error:\n%s", out)
	}
	if strings.Contains(string(out), "started") {
		t.Errorf("the worker or the cron job started without the api:\n%s", out)
	}
}

// TestRunLocalAsksTheAPIItStarted: scripts/run-local.sh (make run) starts the api on
// 127.0.0.1:8080 whatever ORDERFLOW_HTTP_ADDRESS the shell exports, and waits for the health
// of that api, not of the exported address.
func TestRunLocalAsksTheAPIItStarted(t *testing.T) {
	cfg := testenv.EmptyDatabase(t)
	out, err := runLocal(t, cfg, "touch api-started; sleep 2",
		`test -e api-started && test "$ORDERFLOW_HTTP_ADDRESS" = 127.0.0.1:8080`,
		"ORDERFLOW_HTTP_ADDRESS=127.0.0.1:9999")
	if err != nil {
		t.Fatalf("scripts/run-local.sh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "started worker") {
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
	out, err := runLocal(t, cfg,
		"sleep 1; echo 'orderflow api: listen on http.address 127.0.0.1:8080: bind: address already in use' >&2; exit 1",
		`test "$ORDERFLOW_HTTP_ADDRESS" = 127.0.0.1:8080`)
	if err == nil {
		t.Errorf("scripts/run-local.sh exited 0 although another orderflow serves 127.0.0.1:8080:\n%s", out)
	}
	if strings.Contains(string(out), "started") {
		t.Errorf("the worker or the cron job started without their api:\n%s", out)
	}
	if !strings.Contains(string(out), "127.0.0.1:8080") {
		t.Errorf("output does not name the address in use:\n%s", out)
	}
}

// runLocal runs scripts/run-local.sh from a copy of the tree whose make does nothing and
// whose bin/orderflow is a shell script, for database d, with the extra variables, and
// returns what it printed. The script runs the shell commands api for "orderflow api" and
// health for "orderflow health", and prints "started <command>" for any other command.
func runLocal(t *testing.T, d configuration.Database, api, health string, extra ...string) ([]byte, error) {
	t.Helper()
	script, err := os.ReadFile(filepath.Join("scripts", "run-local.sh"))
	if err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	for path, text := range map[string]string{
		"scripts/run-local.sh": string(script),
		"bin/orderflow": "#!/bin/sh\ncase \"$1\" in\napi) " + api + " ;;\nhealth) " + health + " ;;\n" +
			"*) echo \"started $1\" ;;\nesac\n",
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
	return cmd.CombinedOutput()
}
