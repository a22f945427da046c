package configuration

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EnvPrefix starts the name of every environment variable that overrides a key.
const EnvPrefix = "ORDERFLOW_"

// File names inside the configuration directory.
const (
	InstanceFile = "instance.json"
	SecretsFile  = "secrets.json"
)

// secretKeys lists the keys that belong in secrets.json; every other key belongs in
// instance.json.
var secretKeys = map[string]bool{
	"database.user":     true,
	"database.password": true,
	"rabbitmq.user":     true,
	"rabbitmq.password": true,
	"auth.jwtSecret":    true,
	"admin.name":        true,
	"admin.email":       true,
	"admin.password":    true,
}

// meanings holds the one-line meaning of every key, as the README's configuration table
// shows it.
var meanings = map[string]string{
	"http.address":                          "host:port the process's HTTP server listens on (port 0 picks a free port)",
	"http.shutdownTimeout":                  "how long a stopping process lets its work in flight finish (the api's requests, the worker's payments, the events they committed) before it cuts it short and exits 1; the worker's payments get it less a quarter of it, at most 3 s, which the steps after them keep; compose's `stop_grace_period` must be longer",
	"http.requestTimeout":                   "deadline of one API request (a request whose client leaves still runs to its answer or this deadline, unless it was still waiting for a place: see `http.maxRequestsInFlight`)",
	"http.maxBodyBytes":                     "largest accepted request body, in bytes; a body is read whole before its request waits for a place (`http.maxRequestsInFlight`), so this bounds what waiting requests hold. The largest valid body of any operation takes less than a quarter of the default",
	"http.maxRequestsInFlight":              "operations under `/api/` the api works on at once; the others wait, in the order they came, once their body has arrived, while they have more than half their `http.requestTimeout` left and their client is there, and are then answered 503 with `Retry-After` without having run. Nothing else waits: probes, `/metrics`, `/openapi.yaml`, `/docs`",
	"http.pprofAddress":                     "host:port of a separate listener serving Go's profiles under /debug/pprof/; empty serves none",
	"database.host":                         "PostgreSQL host",
	"database.port":                         "PostgreSQL port",
	"database.name":                         "PostgreSQL database name",
	"database.sslMode":                      "libpq sslmode: disable, allow, prefer, require, verify-ca or verify-full",
	"database.maxConns":                     "largest number of open connections in the process's pool",
	"database.user":                         "PostgreSQL user",
	"database.password":                     "PostgreSQL password (empty for trust authentication)",
	"rabbitmq.host":                         "RabbitMQ host",
	"rabbitmq.port":                         "RabbitMQ AMQP port",
	"rabbitmq.vhost":                        "RabbitMQ virtual host",
	"rabbitmq.exchange":                     "topic exchange the order events are published to; its queues are named after it, so it must not start with `amq.` (RabbitMQ keeps that prefix for its own)",
	"rabbitmq.prefetch":                     "unacknowledged deliveries each of the worker's `order-completed` and `order-expired` consumers may hold (AMQP QoS prefetch count), 1 to 65535; above 2000 a consumer spreads them over several channels of at most 2000 each. The `order-created` consumer takes `orders.maxPaymentsInFlight` instead",
	"rabbitmq.user":                         "RabbitMQ user",
	"rabbitmq.password":                     "RabbitMQ password",
	"auth.tokenTtl":                         "lifetime of an issued access token, at least 1s. A token names its user and the version of the user's password, and the user is read at every request: a changed role counts at once, and a deleted user's tokens, and a user's tokens issued before its password was changed (by `PUT /api/users/{id}`, or by a start-up with a new `admin.password`), are refused at once with 401",
	"auth.issuer":                           "issuer (iss) written into and required of access tokens",
	"auth.jwtSecret":                        "HMAC key that signs access tokens, at least 32 bytes",
	"auth.loginAttemptsPerMinute":           "failed logins allowed per e-mail address per minute (burst, refilled evenly) before 429; as many wrong currentPasswords of PUT /api/users/{id} are allowed per user, apart",
	"auth.loginAttemptsPerAddressPerMinute": "failed logins and wrong currentPasswords allowed per client IP address (an IPv6 client's whole /64 network) per minute (burst, refilled evenly) before 429",
	"orders.paymentDelay":                   "simulated payment time of an order in processing",
	"orders.completionProbability":          "probability in [0, 1] that a processed order completes",
	"orders.expireAfter":                    "age after which an order still processing expires; longer than `orders.paymentDelay`",
	"orders.expiryInterval":                 "time between two expiry sweeps of the cron job, at least 100ms",
	"orders.expiryBatchSize":                "largest number of orders one expiry sweep statement expires",
	"orders.maxPaymentsInFlight":            "payments one worker process simulates at once (its `order-created` consumer's prefetch, spread over channels of at most 2000); a delivery holds its place from its claim to its completion, so with the default 5 s payment 5000 allow at most 1,000 orders/s, and about 800 with a second of claiming and completing each; at most 1000000",
	"orders.intakeConnections":              "database connections (of `database.maxConns`, so at most that many) one API process stores new orders on at once: one whenever orders wait, the others only while a whole group (`orders.intakeGroupSize`) waits; orders arriving while a writer is busy wait and are stored together",
	"orders.intakeGroupSize":                "largest number of waiting orders stored in one transaction",
	"outbox.pollInterval":                   "time between two scans of the outbox for unpublished events, at least 10ms",
	"outbox.batchSize":                      "largest number of outbox rows published per scan",
	"outbox.retention":                      "how long published outbox rows are kept before deletion",
	"log.level":                             "lowest logged level: debug, info, warn or error",
	"log.format":                            "log line format: json or text",
	"runtime.memoryLimitMiB":                "soft limit of the process's memory in MiB (Go's `GOMEMLIMIT`, which wins when set): near it the garbage collector runs more often, up to half the CPU, instead of letting the heap grow to twice what is live; past it the process goes on. 0 sets none, 1048576 (1 TiB) at most. Raise it with `orders.maxPaymentsInFlight` or `http.maxRequestsInFlight`",
	"admin.name":                            "name of the administrator account, 1 to 100 characters and not blank; the API's start-up stores it whenever the account's differs, so `PUT /api/users/{id}` refuses another name for that account with 409",
	"admin.email":                           "e-mail (login) of the administrator account, stored lower-cased; no process starts while it is not an ASCII e-mail address of at most 100 characters, and the API does not start while it breaks the rule of every account's address or belongs to an account that is not an admin; that account cannot be deleted, given another role or another address (change `admin.email` to move the administrator)",
	"admin.password":                        "password of the administrator account, at least 6 characters and at most 72 bytes; the API start-up that stores a new one ends the administrator's earlier tokens; the API's start-up stores it whenever the account's password differs, so `PUT /api/users/{id}` takes no `password` for that account (409)",
}

// Key describes one configuration key.
type Key struct {
	// Path is the key's dotted JSON path, such as "orders.paymentDelay".
	Path string
	// Env is the environment variable that overrides the key.
	Env string
	// File is the file that holds the key: InstanceFile or SecretsFile.
	File string
	// Default is the value Defaults() gives the key, written as in the file
	// (strings unquoted, durations such as "10m").
	Default string
	// Meaning is a one-line description of the key.
	Meaning string
}

// leaf is one configuration key found by reflection.
type leaf struct {
	path  string
	env   string
	index []int
	typ   reflect.Type
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// isSection reports whether values of t are JSON objects of further keys.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshaler)
}

// jsonName returns the JSON key of a struct field, or "" when the field is not encoded.
func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

// envName returns the environment variable of a dotted key path.
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// leaves lists every key of Config in declaration order.
var leaves = sync.OnceValue(func() []leaf {
	var out []leaf
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := jsonName(f)
			if name == "" {
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			idx := append(append([]int(nil), index...), i)
			if isSection(f.Type) {
				walk(f.Type, path, idx)
				continue
			}
			out = append(out, leaf{path: path, env: envName(path), index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
})

// fileOf returns the file that holds the key at path.
func fileOf(path string) string {
	if secretKeys[path] {
		return SecretsFile
	}
	return InstanceFile
}

// KeyTable lists every configuration key with its environment variable, file, default
// and meaning, in the order of the Config struct.
func KeyTable() []Key {
	def := reflect.ValueOf(Defaults())
	keys := make([]Key, 0, len(leaves()))
	for _, l := range leaves() {
		keys = append(keys, Key{
			Path:    l.path,
			Env:     l.env,
			File:    fileOf(l.path),
			Default: formatValue(def.FieldByIndex(l.index)),
			Meaning: meanings[l.path],
		})
	}
	return keys
}

// formatValue writes v the way a file or an environment variable would give it.
func formatValue(v reflect.Value) string {
	if d, ok := v.Interface().(Duration); ok {
		return formatDuration(d.D())
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	}
	return ""
}

// formatDuration writes d without zero units ("10m" rather than "10m0s").
func formatDuration(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		return d.String()
	}
	h, m, sec := d/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if sec > 0 {
		fmt.Fprintf(&b, "%ds", sec)
	}
	return b.String()
}
