package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/fx"

	"orderflow/configuration"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "orderflow-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "orderflow")
	build := exec.Command("go", "build", "-race", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build orderflow:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestValidateApps(t *testing.T) {
	cfg := configuration.Defaults()
	for process := range processModules {
		t.Run(process, func(t *testing.T) {
			if err := fx.ValidateApp(processOptions(process, &cfg)); err != nil {
				t.Fatalf("%s wiring: %v", process, err)
			}
		})
	}
}

// env points the committed configuration at the test's own database and exchange.
func env(t *testing.T) []string {
	t.Helper()
	cfg := testenv.Config(t)
	return append(os.Environ(),
		"ORDERFLOW_CONFIG_DIR=../../configuration",
		"ORDERFLOW_DATABASE_HOST="+cfg.Database.Host,
		fmt.Sprintf("ORDERFLOW_DATABASE_PORT=%d", cfg.Database.Port),
		"ORDERFLOW_DATABASE_NAME="+cfg.Database.Name,
		// Several processes run at once: a pool of the shipped 20 each would take much of
		// PostgreSQL's 100 connections. 4 is orders.intakeConnections, the least it may be.
		"ORDERFLOW_DATABASE_MAXCONNS=4",
		"ORDERFLOW_RABBITMQ_HOST="+cfg.RabbitMQ.Host,
		"ORDERFLOW_RABBITMQ_EXCHANGE="+cfg.RabbitMQ.Exchange,
		"ORDERFLOW_HTTP_ADDRESS=127.0.0.1:0",
		"ORDERFLOW_LOG_LEVEL=info",
		"ORDERFLOW_LOG_FORMAT=json",
		// The binary is built with -race, whose runtime otherwise sleeps a second before
		// every exit with status 0, which each test that stops a process waits for.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
	)
}

// TestProcessesStartAndStop runs each process as its binary against the real servers,
// waits for its ready line and its /readyz, asks `orderflow health`, and stops it with
// SIGTERM.
func TestProcessesStartAndStop(t *testing.T) {
	for process := range processModules {
		t.Run(process, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binary, process)
			cmd.Env = env(t)
			ready, out := startUntilReady(t, cmd, process, func(addr string) {
				healthEnv := append(slices.Clip(cmd.Env), "ORDERFLOW_HTTP_ADDRESS="+addr)
				// The broker connection comes up in the background, and the api and the cron
				// job are ready without it: its "ok" comes soon, not at once.
				testutil.Eventually(t, 20*time.Second, "orderflow health to report database and rabbitmq ok", func() bool {
					health := exec.Command(binary, "health")
					health.Env = healthEnv
					out, err := health.CombinedOutput()
					return err == nil && strings.Contains(string(out), `"database":"ok"`) && strings.Contains(string(out), `"rabbitmq":"ok"`)
				})
			})
			if !ready {
				t.Fatalf("%s exited before it was ready:\n%s", process, out)
			}
		})
	}
}

// TestMemoryLimit checks that a process applies runtime.memoryLimitMiB, that GOMEMLIMIT wins
// over it, and that 0 sets none: each as its ready line reports the runtime's limit.
func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"ORDERFLOW_RUNTIME_MEMORYLIMITMIB=77", `"memory_limit_mib":77`},
		{"ORDERFLOW_RUNTIME_MEMORYLIMITMIB=77 GOMEMLIMIT=50MiB", `"memory_limit_mib":50`},
		{"ORDERFLOW_RUNTIME_MEMORYLIMITMIB=77 GOMEMLIMIT=", `"memory_limit_mib":77`},
		{"GOMEMLIMIT=", `"memory_limit_mib":112`}, // the shipped instance.json's
		{"ORDERFLOW_RUNTIME_MEMORYLIMITMIB=0", `"memory_limit_mib":"none"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binary, "cronjob")
			cmd.Env = slices.DeleteFunc(env(t), func(kv string) bool { return strings.HasPrefix(kv, "GOMEMLIMIT=") })
			cmd.Env = append(cmd.Env, strings.Fields(tc.name)...)
			ready, out := startUntilReady(t, cmd, "cronjob", nil)
			if !ready {
				t.Fatalf("cronjob exited before it was ready:\n%s", out)
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, `"msg":"ready"`) && !strings.Contains(line, tc.want) {
					t.Errorf("ready line %s, want %s", line, tc.want)
				}
			}
		})
	}
}

func TestStartupFailuresExitWithOneLine(t *testing.T) {
	cases := []struct {
		name, process string
		env           []string
		want          string
	}{
		{"invalid configuration", "worker", []string{"ORDERFLOW_ORDERS_COMPLETIONPROBABILITY=1.5"}, "orders.completionProbability"},
		{"unreachable database", "api", []string{"ORDERFLOW_DATABASE_PORT=1"}, "connect to database"},
		{"missing configuration", "cronjob", []string{"ORDERFLOW_CONFIG_DIR=/nonexistent"}, "instance.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binary, tc.process)
			cmd.Env = append(env(t), tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("%s started despite %s", tc.process, tc.name)
			}
			text := strings.TrimSpace(string(out))
			if strings.Count(text, "\n") != 0 || !strings.HasPrefix(text, "orderflow "+tc.process+": ") || !strings.Contains(text, tc.want) {
				t.Errorf("output = %q, want one line naming %q", text, tc.want)
			}
		})
	}
}

func TestMigrateCommand(t *testing.T) {
	cfg := testenv.Config(t)
	admin, err := sql.Open("pgx", fmt.Sprintf("postgres://%s@%s:%d/postgres?sslmode=disable", cfg.Database.User, cfg.Database.Host, cfg.Database.Port))
	if err != nil {
		t.Fatal(err)
	}
	empty := fmt.Sprintf("orderflow_cmd_migrate_%d", time.Now().UnixNano())
	if _, err := admin.Exec("CREATE DATABASE " + empty); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + empty + " WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", empty, err)
		}
	})

	files, _ := filepath.Glob("../../migrations/*.sql")
	for _, want := range []string{fmt.Sprintf("applied %d migration(s)", len(files)), "applied 0 migration(s)"} {
		cmd := exec.Command(binary, "migrate")
		cmd.Env = append(env(t), "ORDERFLOW_DATABASE_NAME="+empty)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("migrate: %v", err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("migrate printed %q, want %q", got, want)
		}
	}
}

// TestUsage: a wrong command line prints the usage on stderr and exits 2; asking for help
// prints it on stdout and exits 0.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"nonsense"}, {"--bogus", "api"}} {
		var stdout, stderr strings.Builder
		if code := run(args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "commands:") {
			t.Errorf("run(%q) = %d, stderr %q; want 2 and the usage", args, code, stderr.String())
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}} {
		var stdout, stderr strings.Builder
		if code := run(args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "commands:") || stderr.Len() > 0 {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want 0 and the usage on stdout only", args, code, stdout.String(), stderr.String())
		}
	}
}

// TestUsageNamesTheMistake: a command line that parses but is wrong (no command, or
// arguments after it, such as a --config written after the command) says on its first line
// what is wrong, before the usage, as the flag package does for an unknown flag.
func TestUsageNamesTheMistake(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"api", "--config", "/etc/orderflow"}, `"--config"`},
		{[]string{"worker", "extra"}, `"extra"`},
	} {
		var stdout, stderr strings.Builder
		code := run(tc.args, &stdout, &stderr)
		first, _, _ := strings.Cut(stderr.String(), "\n")
		if code != 2 || !strings.HasPrefix(first, "orderflow: ") || !strings.Contains(first, tc.want) || !strings.Contains(stderr.String(), "commands:") {
			t.Errorf("run(%q) = %d, first line %q; want 2, a first line naming %s, then the usage", tc.args, code, first, tc.want)
		}
	}
}

// TestHealthOfAnUnreadyProcess: `orderflow health` exits 1 with one line that ends with the
// process's /readyz answer, as a container's health log shows it.
func TestHealthOfAnUnreadyProcess(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"checks":{"database":"ok","rabbitmq":"unavailable: down"},"status":"Service Unavailable"}`)
	}))
	defer srv.Close()
	t.Setenv("ORDERFLOW_HTTP_ADDRESS", strings.TrimPrefix(srv.URL, "http://"))
	var stdout, stderr strings.Builder
	if code := run([]string{"--config", "../../configuration", "health"}, &stdout, &stderr); code != 1 {
		t.Fatalf("health = %d, want 1; stderr %q", code, stderr.String())
	}
	want := `orderflow health: not ready: 503 Service Unavailable: {"checks":{"database":"ok","rabbitmq":"unavailable: down"},"status":"Service Unavailable"}` + "\n"
	if got := stderr.String(); got != want {
		t.Errorf("stderr = %q\nwant     %q", got, want)
	}
}

// startUntilReady runs cmd until it logs that process is ready and its /readyz answers 200,
// calls whileReady (when not nil) with its address, then stops it with SIGTERM and expects a
// clean exit within 30 s; or until it exits by itself. It returns whether the process was
// ready, and what it wrote.
func startUntilReady(t *testing.T, cmd *exec.Cmd, process string, whileReady func(addr string)) (bool, string) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var logged []string
	ready := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			logged = append(logged, lines.Text())
			var line struct{ Msg, Address, Process string }
			if json.Unmarshal(lines.Bytes(), &line) == nil && line.Msg == "ready" && line.Process == process {
				ready <- line.Address
			}
		}
	}()
	wait := func() (string, error) {
		<-scanned
		return strings.Join(logged, "\n"), cmd.Wait()
	}
	var addr string
	select {
	case addr = <-ready:
	case <-scanned:
		out, _ := wait()
		return false, out
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready after 60s", process)
	}
	testutil.Eventually(t, 20*time.Second, process+"'s /readyz to answer 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if whileReady != nil {
		whileReady(addr)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer stopped.Stop()
	out, err := wait()
	if err != nil {
		t.Errorf("%s stopped with %v (killed if it took over 30s); log:\n%s", process, err, out)
	}
	return true, out
}
