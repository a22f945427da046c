package testenv

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"orderflow/configuration"
)

func TestDatabaseIsMigratedAndIsolated(t *testing.T) {
	ctx := context.Background()
	first, second := Database(t), Database(t)
	if first.Name == second.Name {
		t.Fatalf("two calls returned the same database %q", first.Name)
	}
	a := open(t, first.DSN())
	b := open(t, second.DSN())
	if _, err := a.ExecContext(ctx, `DELETE FROM order_items; DELETE FROM products`); err != nil {
		t.Fatal(err)
	}
	var inA, inB int
	if err := a.QueryRowContext(ctx, `SELECT count(*) FROM products`).Scan(&inA); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRowContext(ctx, `SELECT count(*) FROM products`).Scan(&inB); err != nil {
		t.Fatal(err)
	}
	if inA != 0 || inB != 2 {
		t.Fatalf("products after deleting in the first database: first %d, second %d; want 0 and 2", inA, inB)
	}
}

func TestDatabaseIsDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) { name = Database(t).Name })
	admin, err := adminConn()
	if err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := admin.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

func TestConfig(t *testing.T) {
	cfg := Config(t)
	if len(cfg.Auth.JWTSecret) < 32 {
		t.Errorf("JWT secret has %d bytes, want at least 32", len(cfg.Auth.JWTSecret))
	}
	if !strings.HasPrefix(cfg.RabbitMQ.Exchange, "test.") || cfg.RabbitMQ.Exchange == Config(t).RabbitMQ.Exchange {
		t.Errorf("exchange %q is not a unique test exchange", cfg.RabbitMQ.Exchange)
	}
	if cfg.HTTP.Address != "127.0.0.1:0" || cfg.Outbox.PollInterval.D().Milliseconds() != 100 {
		t.Errorf("unexpected test settings: %+v", cfg)
	}
	db := open(t, cfg.Database.DSN())
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestStaleDatabasesAreDropped(t *testing.T) {
	ctx := context.Background()
	admin, err := adminConn()
	if err != nil {
		t.Fatal(err)
	}
	stale := testPrefix + "1700000000_" + randomHex(6)
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+stale+`"`); err != nil {
		t.Fatal(err)
	}
	fresh := Database(t).Name
	if err := dropStale(ctx, admin); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{stale: false, fresh: true} {
		var exists bool
		if err := admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists != want {
			t.Errorf("database %s exists = %v, want %v", name, exists, want)
		}
	}
}

func TestParallelDatabases(t *testing.T) {
	names := make(chan string, 8)
	t.Run("group", func(t *testing.T) {
		for i := range cap(names) {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				cfg := Database(t)
				var n int
				if err := open(t, cfg.DSN()).QueryRow(`SELECT count(*) FROM products`).Scan(&n); err != nil || n != 2 {
					t.Errorf("products in %s: %d, %v; want the 2 seeded", cfg.Name, n, err)
				}
				names <- cfg.Name
			})
		}
	})
	close(names)
	seen := map[string]bool{}
	for name := range names {
		if seen[name] {
			t.Errorf("database %s handed out twice", name)
		}
		seen[name] = true
	}
	if len(seen) != 8 {
		t.Errorf("%d databases, want 8", len(seen))
	}
}

// TestStaleTemplateBuildsAreDropped: a test binary that dies while it migrates a new
// template database (interrupted during the first test after a migration changed) leaves
// the half-built database behind; the next binary drops it once it is certainly stale,
// and leaves alone one that another binary may be building now.
func TestStaleTemplateBuildsAreDropped(t *testing.T) {
	ctx := context.Background()
	admin, err := adminConn()
	if err != nil {
		t.Fatal(err)
	}
	stale := "orderflow_tpl_0123456789abcdef_build_1700000000_" + randomHex(4)
	building := "orderflow_tpl_0123456789abcdef_build_" + strconv.FormatInt(time.Now().Unix(), 10) + "_" + randomHex(4)
	for _, name := range []string{stale, building} {
		if _, err := admin.ExecContext(ctx, `CREATE DATABASE "`+name+`"`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = admin.Exec(`DROP DATABASE IF EXISTS "` + name + `" WITH (FORCE)`) })
	}
	if err := dropStale(ctx, admin); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{stale: false, building: true} {
		var exists bool
		if err := admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists != want {
			t.Errorf("database %s exists = %v, want %v", name, exists, want)
		}
	}
}

// TestConfigDeletesTheBrokerNamesAtCleanup: the exchanges and queues that processes declare
// for a test's exchange are gone once the test ended, so that test runs do not pile them up
// on the shared broker.
func TestConfigDeletesTheBrokerNamesAtCleanup(t *testing.T) {
	var rabbit configuration.RabbitMQ
	t.Run("user", func(t *testing.T) {
		rabbit = Config(t).RabbitMQ
		ch := AdminChannel(t, rabbit)
		exchanges, queues := BrokerNames(rabbit.Exchange)
		for _, e := range exchanges {
			if err := ch.ExchangeDeclare(e, "topic", true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
		}
		// Quorum queues, as the processes declare, each holding a message.
		for _, q := range queues {
			if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
				t.Fatal(err)
			}
			if err := ch.Publish("", q, false, false, amqp.Publishing{Body: []byte("left over")}); err != nil {
				t.Fatal(err)
			}
		}
	})
	conn, err := amqp.Dial(rabbit.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A passive declaration of a missing name closes its channel: one channel per name.
	exists := func(declare func(ch *amqp.Channel) error) bool {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		return declare(ch) == nil
	}
	exchanges, queues := BrokerNames(rabbit.Exchange)
	for _, q := range queues {
		if exists(func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			return err
		}) {
			t.Errorf("queue %s still exists after its test ended", q)
			exists(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
		}
	}
	for _, e := range exchanges {
		if exists(func(ch *amqp.Channel) error {
			return ch.ExchangeDeclarePassive(e, "topic", true, false, false, false, nil)
		}) {
			t.Errorf("exchange %s still exists after its test ended", e)
			exists(func(ch *amqp.Channel) error { return ch.ExchangeDelete(e, false, false) })
		}
	}
}
