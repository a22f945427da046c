package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/fx"

	"orderflow/ent"
	"orderflow/events"
	"orderflow/internal/testenv"
	"orderflow/internal/testutil"
	"orderflow/platform/db"
	"orderflow/platform/httpserver"
	"orderflow/platform/outbox"
)

// TestStopDrainsRequestsBeforeTheirDependencies stops the api while a request is in flight:
// the request still reaches the database, and the event it commits is published by the
// stopping relay, because the HTTP server drains before the relay stops and the pool closes.
func TestStopDrainsRequestsBeforeTheirDependencies(t *testing.T) {
	cfg := testenv.Config(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var (
		srv  *httpserver.Server
		pool *sql.DB
	)
	app := fx.New(processOptions("api", cfg),
		fx.Invoke(func(mux *http.ServeMux, client *ent.Client) {
			mux.HandleFunc("POST /test/late-write", func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				<-release
				err := db.WithTx(r.Context(), client, func(tx *ent.Tx) error {
					_, err := outbox.Write(r.Context(), tx, events.SourceAPI, events.OrderCompleted{
						OrderID: 7, UserID: 2, Total: events.NewMoney(decimal.NewFromInt(10)), CompletedAt: time.Now(),
					}, nil)
					return err
				})
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
				}
			})
		}),
		fx.Populate(&srv, &pool))
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Wait for the broker, so that the stopping relay can publish.
	testutil.Eventually(t, 20*time.Second, "the api to be ready with its broker", func() bool {
		resp, err := http.Get(srv.URL() + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && !strings.Contains(string(body), "unavailable")
	})

	answered := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Post(srv.URL()+"/test/late-write", "text/plain", nil)
		if err != nil {
			t.Errorf("request: %v", err)
		}
		answered <- resp
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- app.Stop(context.Background()) }()
	// Let the stop go as far as it goes while the request is in flight.
	time.Sleep(300 * time.Millisecond)
	close(release)
	if resp := <-answered; resp != nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("request in flight at stop answered %d: %s", resp.StatusCode, body)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}

	check := testenv.Pool(t, cfg.Database)
	var total, unpublished int
	if err := check.QueryRow(`SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM outbox`).Scan(&total, &unpublished); err != nil {
		t.Fatal(err)
	}
	if total != 1 || unpublished != 0 {
		t.Errorf("outbox holds %d rows, %d unpublished; want the request's event, published by the stopping relay", total, unpublished)
	}
}

// TestStopPastTheDeadlineNamesIt stops the api while a request is still being received and
// lets http.shutdownTimeout pass: the process exits with a line that says its stop was cut
// short and names the key that bounds it, rather than a bare "context deadline exceeded".
func TestStopPastTheDeadlineNamesIt(t *testing.T) {
	t.Parallel()
	out := &logBuffer{}
	cmd := exec.Command(binary, "api")
	cmd.Env = append(env(t), "ORDERFLOW_HTTP_SHUTDOWNTIMEOUT=1s")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer kill.Stop()
	var addr string
	testutil.Eventually(t, 30*time.Second, "the api to be ready", func() bool {
		addr = out.readyAddress("api")
		return addr != ""
	})
	// A request whose body never comes keeps the server busy until http.requestTimeout (10 s).
	// The server's "100 Continue" says that its handler has begun to read the body.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /api/auth/login HTTP/1.1\r\nHost: orderflow\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if status, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(status, "100 Continue") {
		t.Fatalf("the api answered %q (%v), want 100 Continue", status, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = <-exited
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the api exited with %v, want status 1:\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "orderflow api: ") || !strings.Contains(last, "http.shutdownTimeout (1s)") {
		t.Errorf("last line %q, want one that names http.shutdownTimeout (1s)", last)
	}
}
