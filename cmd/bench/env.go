package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"orderflow/configuration"
	"orderflow/platform/bus"
	"orderflow/platform/db"
	"orderflow/platform/migrate"
	"orderflow/platform/outbox"
)

// runner holds what every benchmark shares: the size, the base configuration, where to
// write, and the binary to run.
type runner struct {
	size   size
	cfg    *configuration.Config
	cfgDir string
	out    string
	keep   bool
	log    *slog.Logger
	stamp  string
	binary string
	// set overrides settings of every process started (ORDERFLOW_* variables).
	set map[string]string
}

// buildBinary builds ./cmd/orderflow into dir, as the Makefile's build target does.
func buildBinary(ctx context.Context, dir string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(dir, "orderflow"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", abs, "./cmd/orderflow")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build ./cmd/orderflow: %w", err)
	}
	return abs, nil
}

// env is one benchmark's isolated environment: its database and its exchange.
type env struct {
	r        *runner
	name     string
	dbName   string
	exchange string
	cfg      configuration.Config
	pool     *sql.DB
	// extra databases created from this one (dropped with it).
	copies []string
	procs  []*process
}

// newEnv creates the benchmark's database from the migrations and opens a pool on it.
func (r *runner) newEnv(ctx context.Context, name string) (*env, error) {
	e := &env{
		r:        r,
		name:     name,
		dbName:   "orderflow_bench_" + r.stamp + "_" + name,
		exchange: "orderflow.bench." + r.stamp + "." + name,
		cfg:      *r.cfg,
	}
	e.cfg.Database.Name = e.dbName
	e.cfg.RabbitMQ.Exchange = e.exchange
	if err := e.admin(ctx, "CREATE DATABASE "+e.dbName); err != nil {
		return nil, err
	}
	pool, err := db.Open(ctx, e.cfg.Database)
	if err != nil {
		e.close()
		return nil, err
	}
	e.pool = pool
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := migrate.Apply(ctx, pool, quiet); err != nil {
		e.close()
		return nil, fmt.Errorf("migrate %s: %w", e.dbName, err)
	}
	return e, nil
}

// admin runs a statement on the maintenance database.
func (e *env) admin(ctx context.Context, stmt string) error {
	c := e.cfg.Database
	c.Name = "postgres"
	c.MaxConns = 1
	pool, err := db.Open(ctx, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(stmt)[0]+" "+strings.Fields(stmt)[1], err)
	}
	return nil
}

// copyDB creates an identical database from this one (which must have no other sessions)
// and returns its name.
func (e *env) copyDB(ctx context.Context, suffix string) (string, error) {
	name := e.dbName + "_" + suffix
	// CREATE DATABASE ... TEMPLATE needs the template to have no other connections.
	e.pool.SetMaxIdleConns(0)
	defer e.pool.SetMaxIdleConns(e.cfg.Database.MaxConns)
	var err error
	for range 50 {
		err = e.admin(ctx, "CREATE DATABASE "+name+" TEMPLATE "+e.dbName)
		if err == nil {
			e.copies = append(e.copies, name)
			return name, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("copy database: %w", err)
}

// startRelay runs an outbox relay in the benchmark process, as every orderflow process that
// writes events runs one: the commits of the benchmark's own outbox writes wake it. It stops
// when ctx ends or the returned function is called.
func (e *env) startRelay(ctx context.Context) (stop func(), err error) {
	conn := bus.NewConn(e.cfg.RabbitMQ, e.r.log, bus.Options{Name: "bench-relay"})
	conn.Start()
	if err := conn.WaitReady(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to the broker: %w", err)
	}
	relay := outbox.NewRelay(e.pool, bus.NewPublisher(conn), e.cfg.Outbox, e.r.log)
	relay.Start()
	return func() {
		if err := relay.Stop(context.Background()); err != nil {
			e.r.log.Warn("stop the benchmark's outbox relay", "error", err)
		}
		conn.Close()
	}, nil
}

// openDB opens a pool on another database of the same server.
func (e *env) openDB(ctx context.Context, name string, conns int) (*sql.DB, error) {
	c := e.cfg.Database
	c.Name, c.MaxConns = name, conns
	return db.Open(ctx, c)
}

// close stops the processes, and drops the databases and the exchange unless -keep.
func (e *env) close() {
	for _, p := range e.procs {
		p.stop()
	}
	if e.pool != nil {
		e.pool.Close()
	}
	if e.r.keep {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range append(e.copies, e.dbName) {
		if err := e.admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			e.r.log.Warn("drop benchmark database", "database", name, "error", err)
		}
	}
	if err := deleteTopology(e.cfg.RabbitMQ); err != nil {
		e.r.log.Warn("delete benchmark exchange", "exchange", e.exchange, "error", err)
	}
}

// drain consumes the queue of consumer in the benchmark's topology and drops every message,
// until the returned function is called. The intake benchmark runs no worker, and a quorum
// queue that keeps every event of the run makes the broker write them all again whenever its
// log rolls over (every 512 MiB by default): with a backlog of 360,000 events that took
// RabbitMQ most of a core for 10-15 s, in the middle of the API's load.
func (e *env) drain(consumer string) (stop func(), err error) {
	conn, err := amqp.Dial(e.cfg.RabbitMQ.URL())
	if err != nil {
		return nil, fmt.Errorf("connect to the broker: %w", err)
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	queue := bus.NewTopology(e.exchange, bus.DefaultDeliveryLimit, nil).QueueName(consumer)
	deliveries, err := ch.Consume(queue, "", true /* auto-ack */, false /* exclusive */, false /* no-local */, false /* no-wait */, nil)
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", queue, err)
	}
	go func() {
		for range deliveries {
		}
	}()
	return func() { conn.Close() }, nil
}

// deleteTopology deletes the exchanges and queues of the benchmark's exchange.
func deleteTopology(cfg configuration.RabbitMQ) error {
	conn, err := amqp.Dial(cfg.URL())
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	exchanges, queues := bus.NewTopology(cfg.Exchange, bus.DefaultDeliveryLimit, nil).Names()
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false /* if unused */, false /* if empty */, false /* no-wait */); err != nil {
			return err
		}
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false /* if unused */, false /* no-wait */); err != nil {
			return err
		}
	}
	return nil
}
