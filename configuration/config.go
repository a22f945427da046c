// Package configuration loads orderflow's settings: instance.json (every tunable) and
// secrets.json (credentials), merged, overridden by ORDERFLOW_* environment variables,
// and validated before any process starts.
package configuration

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// Config is the merged, validated configuration of one orderflow process.
type Config struct {
	HTTP     HTTP     `json:"http"`
	Database Database `json:"database"`
	RabbitMQ RabbitMQ `json:"rabbitmq"`
	Auth     Auth     `json:"auth"`
	Orders   Orders   `json:"orders"`
	Outbox   Outbox   `json:"outbox"`
	Log      Log      `json:"log"`
	Runtime  Runtime  `json:"runtime"`
	Admin    Admin    `json:"admin"`
}

// HTTP configures the process's HTTP server (the API, or the health endpoints of the
// worker and the cron job).
type HTTP struct {
	Address             string   `json:"address"`
	ShutdownTimeout     Duration `json:"shutdownTimeout"`
	RequestTimeout      Duration `json:"requestTimeout"`
	MaxBodyBytes        int64    `json:"maxBodyBytes"`
	MaxRequestsInFlight int      `json:"maxRequestsInFlight"`
	PprofAddress        string   `json:"pprofAddress"`
}

// Database configures the PostgreSQL connection pool.
type Database struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Name     string `json:"name"`
	SSLMode  string `json:"sslMode"`
	MaxConns int    `json:"maxConns"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// DSN returns the connection URL of the configured database.
func (d Database) DSN() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(d.User, d.Password),
		Host:     net.JoinHostPort(d.Host, strconv.Itoa(d.Port)),
		Path:     "/" + d.Name,
		RawQuery: url.Values{"sslmode": {d.SSLMode}}.Encode(),
	}
	if d.Password == "" {
		u.User = url.User(d.User)
	}
	return u.String()
}

// RabbitMQ configures the broker connection and topology.
type RabbitMQ struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	VHost    string `json:"vhost"`
	Exchange string `json:"exchange"`
	Prefetch int    `json:"prefetch"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// URL returns the AMQP URL of the configured broker.
func (r RabbitMQ) URL() string {
	// The path is the virtual host's name, written with every "/" in it escaped ("/" is
	// "/%2F"); Path holds it unescaped, as the client reads it back.
	u := url.URL{
		Scheme:  "amqp",
		User:    url.UserPassword(r.User, r.Password),
		Host:    net.JoinHostPort(r.Host, strconv.Itoa(r.Port)),
		Path:    "/" + r.VHost,
		RawPath: "/" + url.PathEscape(r.VHost),
	}
	return u.String()
}

// Auth configures JWT issuance and verification.
type Auth struct {
	TokenTTL  Duration `json:"tokenTtl"`
	Issuer    string   `json:"issuer"`
	JWTSecret string   `json:"jwtSecret"`
	// LoginAttemptsPerMinute is how many failed logins one e-mail address may have per
	// minute (as a burst, refilled evenly) before the API answers 429.
	LoginAttemptsPerMinute int `json:"loginAttemptsPerMinute"`
	// LoginAttemptsPerAddressPerMinute is the same limit per client IP address.
	LoginAttemptsPerAddressPerMinute int `json:"loginAttemptsPerAddressPerMinute"`
}

// Orders holds the tunables of order processing and expiry.
type Orders struct {
	PaymentDelay          Duration `json:"paymentDelay"`
	CompletionProbability float64  `json:"completionProbability"`
	ExpireAfter           Duration `json:"expireAfter"`
	ExpiryInterval        Duration `json:"expiryInterval"`
	ExpiryBatchSize       int      `json:"expiryBatchSize"`
	MaxPaymentsInFlight   int      `json:"maxPaymentsInFlight"`
	IntakeConnections     int      `json:"intakeConnections"`
	IntakeGroupSize       int      `json:"intakeGroupSize"`
}

// Outbox configures the transactional outbox relay.
type Outbox struct {
	PollInterval Duration `json:"pollInterval"`
	BatchSize    int      `json:"batchSize"`
	Retention    Duration `json:"retention"`
}

// Log configures the process logger.
type Log struct {
	Level  string `json:"level"`
	Format string `json:"format"`
}

// Runtime configures Go's runtime in the process.
type Runtime struct {
	MemoryLimitMiB int64 `json:"memoryLimitMiB"`
}

// Admin is the administrator account that the API creates (or updates) at start-up.
type Admin struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// Duration is a time.Duration written as a Go duration string ("5s", "10m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as a Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration such as \"5s\" or \"10m\": %q", b)
	}
	*d = Duration(v)
	return nil
}

// Defaults returns the configuration that applies when a file leaves a key out.
func Defaults() Config {
	return Config{
		HTTP: HTTP{
			Address:         ":8080",
			ShutdownTimeout: Duration(15 * time.Second),
			RequestTimeout:  Duration(10 * time.Second),
			MaxBodyBytes:    64 << 10,
			// A closed loop of 256 clients reaches the intake's peak on both the fast and the
			// slow hosts of cmd/bench/RESULTS.md; beyond it each request held costs the api
			// memory and adds no throughput.
			MaxRequestsInFlight: 256,
		},
		Database: Database{Host: "localhost", Port: 5432, Name: "orderflow", SSLMode: "disable", MaxConns: 20, User: "postgres"},
		RabbitMQ: RabbitMQ{Host: "localhost", Port: 5672, VHost: "/", Exchange: "orderflow.events", Prefetch: 1000, User: "guest", Password: "guest"},
		Auth: Auth{TokenTTL: Duration(time.Hour), Issuer: "orderflow",
			LoginAttemptsPerMinute: 10, LoginAttemptsPerAddressPerMinute: 100},
		Orders: Orders{
			PaymentDelay:          Duration(5 * time.Second),
			CompletionProbability: 0.5,
			ExpireAfter:           Duration(10 * time.Minute),
			ExpiryInterval:        Duration(60 * time.Second),
			ExpiryBatchSize:       500,
			// A delivery holds its place from its claim to its completion: the 5 s of the
			// payment, and on a busy database a second or more of waiting for a connection
			// on either side. 5,000 keep up with 800 orders per second at 6 s, where 3,000
			// held a slow host to about 530 (cmd/bench/RESULTS.md, "The worker's default
			// limit of payments in flight"). A payment waits as a timer, so the memory they
			// cost is their messages'; the consumer spreads them over channels of at most
			// 2,000 (a quorum queue's cap).
			MaxPaymentsInFlight: 5000,
			IntakeConnections:   4,
			IntakeGroupSize:     32,
		},
		Outbox: Outbox{PollInterval: Duration(time.Second), BatchSize: 100, Retention: Duration(168 * time.Hour)},
		Log:    Log{Level: "info", Format: "json"},
		// The api with 2,048 clients posting at once kept about 45 MiB live and 23-44 MiB of
		// stacks; without a limit its heap doubled past that and it peaked at 171 MiB
		// (cmd/bench/RESULTS.md, "Requests at once and the memory limit").
		Runtime: Runtime{MemoryLimitMiB: 112},
		Admin:   Admin{Name: "Administrator", Email: "admin@orderprocessing.local"},
	}
}
