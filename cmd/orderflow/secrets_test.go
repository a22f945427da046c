package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
)

// logBuffer collects everything a process writes to stdout and stderr.
type logBuffer struct{ testutil.Buffer }

// readyAddress returns the address of process's ready line, or "".
func (b *logBuffer) readyAddress(process string) string {
	for _, line := range strings.Split(b.String(), "\n") {
		var l struct{ Msg, Address, Process string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "ready" && l.Process == process {
			return l.Address
		}
	}
	return ""
}

// rabbitUser creates a RabbitMQ user with the given password and every permission on the
// default virtual host, deleted when the test ends.
func rabbitUser(t *testing.T, name, password string) {
	t.Helper()
	run := func(args ...string) error {
		_, err := testenv.Rabbitmqctl(args...)
		return err
	}
	if err := run("add_user", name, password); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run("delete_user", name); err != nil {
			t.Error(err)
		}
	})
	if err := run("set_permissions", "-p", "/", name, ".*", ".*", ".*"); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsNeverLogged runs the api, the worker and the cron job at debug level with
// distinctive secrets, drives an order from login to completion with some failures on the
// way, then provokes start-up failures, and looks for the secrets in everything the
// processes wrote.
func TestSecretsNeverLogged(t *testing.T) {
	stamp := time.Now().UnixNano()
	var (
		jwtSecret     = fmt.Sprintf("jwt-SECRET-%d-0123456789abcdefghij", stamp)
		adminPassword = fmt.Sprintf("Adm1n-SECRET-%d", stamp)
		dbPassword    = fmt.Sprintf("db-SECRET-%d", stamp)
		brokerUser    = fmt.Sprintf("orderflow_secrets_%d", stamp)
		brokerPass    = fmt.Sprintf("amqp-SECRET-%d", stamp)
		wrongPassword = fmt.Sprintf("Wrong-SECRET-%d", stamp)
		wrongBroker   = fmt.Sprintf("amqp-WRONG-%d", stamp)
		shortSecret   = fmt.Sprintf("short-%d", stamp%1_000_000)
	)
	// PostgreSQL trusts local connections, so any database password connects; it still
	// travels through the configuration, the DSN and every error about the connection.
	rabbitUser(t, brokerUser, brokerPass)
	base := append(env(t),
		"ORDERFLOW_LOG_LEVEL=debug",
		"ORDERFLOW_AUTH_JWTSECRET="+jwtSecret,
		"ORDERFLOW_ADMIN_PASSWORD="+adminPassword,
		"ORDERFLOW_DATABASE_PASSWORD="+dbPassword,
		"ORDERFLOW_RABBITMQ_USER="+brokerUser,
		"ORDERFLOW_RABBITMQ_PASSWORD="+brokerPass,
		"ORDERFLOW_ORDERS_PAYMENTDELAY=100ms",
		"ORDERFLOW_ORDERS_COMPLETIONPROBABILITY=1",
		"ORDERFLOW_ORDERS_EXPIRYINTERVAL=1s",
		"ORDERFLOW_OUTBOX_POLLINTERVAL=100ms",
	)
	var logs []*logBuffer
	start := func(process string, extra ...string) (*exec.Cmd, *logBuffer) {
		t.Helper()
		out := &logBuffer{}
		logs = append(logs, out)
		cmd := exec.Command(binary, process)
		cmd.Env = append(append([]string(nil), base...), extra...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, out
	}
	waitReady := func(process string, out *logBuffer) string {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if addr := out.readyAddress(process); addr != "" {
				return addr
			}
		}
		t.Fatalf("%s not ready after 60s:\n%s", process, out)
		return ""
	}

	api, apiLog := start("api")
	addr := waitReady("api", apiLog)
	worker, workerLog := start("worker")
	cron, cronLog := start("cronjob")
	waitReady("worker", workerLog)
	waitReady("cronjob", cronLog)

	apiURL := "http://" + addr
	call := func(method, path, token, body string, want int) map[string]any {
		t.Helper()
		req, err := http.NewRequest(method, apiURL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, want, b)
		}
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return out
	}
	call("POST", "/api/auth/login", "", `{"email":"admin@orderprocessing.local","password":"`+wrongPassword+`"}`, 401)
	token, _ := call("POST", "/api/auth/login", "", `{"email":"admin@orderprocessing.local","password":"`+adminPassword+`"}`, 200)["token"].(string)
	if token == "" {
		t.Fatal("no token")
	}
	call("GET", "/api/products", token+"x", "", 401)
	call("POST", "/api/products", token, `{"name":"Secret-free","price":`, 400)
	call("POST", "/api/users", token, `{"name":"Eve","email":"eve@example.com","password":"`+wrongPassword+`","extra":1}`, 400)
	call("POST", "/api/users", token, `{"name":"Eve","email":"eve@example.com","password":"`+wrongPassword+`"}`, 201)
	call("POST", "/api/auth/login", "", `{"email":"eve@example.com","password":"`+wrongPassword+`"}`, 200)
	product := call("POST", "/api/products", token, `{"name":"Lamp","price":12.50,"stock":3}`, 201)["id"].(float64)
	order := call("POST", "/api/orders", token, fmt.Sprintf(`{"items":[{"productId":%d,"quantity":1}]}`, int(product)), 201)["id"].(float64)
	path := fmt.Sprintf("/api/orders/%d", int(order))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if call("GET", path, token, "", 200)["status"] == "completed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %d not completed after 30s; worker log:\n%s\napi log:\n%s", int(order), tail(workerLog.String()), tail(apiLog.String()))
		}
	}

	for _, cmd := range []*exec.Cmd{api, worker, cron} {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not stop within 30s", cmd.Args[1])
		}
	}

	// Start-up failures, whose messages name what is wrong.
	for _, f := range []struct {
		process string
		env     []string
	}{
		{"api", []string{"ORDERFLOW_DATABASE_PORT=1"}},
		{"worker", []string{"ORDERFLOW_ORDERS_COMPLETIONPROBABILITY=1.5"}},
		{"api", []string{"ORDERFLOW_AUTH_JWTSECRET=" + shortSecret}},
		{"cronjob", []string{"ORDERFLOW_ADMIN_PASSWORD=" + strings.Repeat(adminPassword, 4)}},
	} {
		cmd := exec.Command(binary, f.process)
		cmd.Env = append(append([]string(nil), base...), f.env...)
		out := &logBuffer{}
		logs = append(logs, out)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err == nil {
			t.Errorf("%s started with %v", f.process, f.env)
		}
	}
	// A worker whose broker password is wrong keeps retrying, and logs why, on both of its
	// connections: the logs searched below must hold those lines.
	bad, badLog := start("worker", "ORDERFLOW_RABBITMQ_PASSWORD="+wrongBroker)
	refused := func(connection string) bool {
		for _, line := range strings.Split(badLog.String(), "\n") {
			var l struct{ Msg, Connection string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "rabbitmq unavailable" && l.Connection == connection {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(20 * time.Second); !refused("orderflow-worker") || !refused("orderflow-worker-publisher"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a worker with a wrong broker password logged no \"rabbitmq unavailable\" line for each connection within 20s:\n%s", tail(badLog.String()))
		}
	}
	_ = bad.Process.Signal(syscall.SIGTERM)
	_ = bad.Wait()

	var all strings.Builder
	for _, l := range logs {
		all.WriteString(l.String())
	}
	text := all.String()
	// The logs are worth searching: the flow, the failures and debug lines are in them.
	for _, want := range []string{`"level":"DEBUG"`, `"msg":"ready"`, "connect to database", "orders.completionProbability", "auth.jwtSecret", "admin.password"} {
		if !strings.Contains(text, want) {
			t.Errorf("the logs lack %q", want)
		}
	}
	for name, secret := range map[string]string{
		"JWT secret": jwtSecret, "admin password": adminPassword, "database password": dbPassword,
		"broker password": brokerPass, "failed login password": wrongPassword, "wrong broker password": wrongBroker,
		"short JWT secret": shortSecret, "issued token": token,
	} {
		if i := strings.Index(text, secret); i >= 0 {
			lo, hi := max(0, i-200), min(len(text), i+len(secret)+200)
			t.Errorf("the %s appears in the logs: …%s…", name, text[lo:hi])
		}
	}
	t.Logf("searched %d bytes of logs from %d runs", len(text), len(logs))
}

// tail returns the last lines of a log, for failure messages.
func tail(s string) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
