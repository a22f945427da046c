package configuration

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Accepted values of the enumerated keys.
var (
	sslModes   = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"json", "text"}
)

// Limits that other parts of orderflow impose on configured values.
const (
	minJWTSecretBytes = 32  // HS256 key no shorter than its hash output
	minPasswordChars  = 6   // the API's password rule
	maxPasswordBytes  = 72  // bcrypt ignores or rejects longer passwords
	maxNameChars      = 100 // users.name
	maxEmailChars     = 100 // users.email
	maxPrefetch       = 65535
	// The shortest intervals of the scans that run whether or not there is work.
	minExpiryInterval = 100 * time.Millisecond
	minPollInterval   = 10 * time.Millisecond
	// maxPaymentsInFlight bounds orders.maxPaymentsInFlight, the worker's OrderCreated
	// prefetch, which it spreads over consumer channels of at most 2000 deliveries each. A
	// connection has 2047 channels, shared with the other consumers: about four million
	// would leave the worker's consumers without channels, while it reports itself ready.
	maxPaymentsInFlight = 1_000_000

	// maxMemoryLimitMiB bounds runtime.memoryLimitMiB, well below where its bytes would
	// overflow.
	maxMemoryLimitMiB = 1 << 20
)

// Validate reports every problem of c at once, joined with errors.Join, each on one line
// naming its key, such as
// "configuration: orders.completionProbability: must be between 0 and 1, got 1.5".
// It never writes a secret's value into a message.
func (c *Config) Validate() error { return c.validate(nil) }

// validate is Validate with every message followed by source(key) in parentheses, when
// source is not nil: where the value of the key came from.
func (c *Config) validate(source func(key string) string) error {
	v := validator{source: source}

	v.address("http.address", c.HTTP.Address)
	v.atLeast("http.maxBodyBytes", c.HTTP.MaxBodyBytes, 1)
	v.atLeast("http.maxRequestsInFlight", int64(c.HTTP.MaxRequestsInFlight), 1)
	if c.HTTP.PprofAddress != "" {
		v.address("http.pprofAddress", c.HTTP.PprofAddress)
	}

	v.nonEmpty("database.host", c.Database.Host)
	v.port("database.port", c.Database.Port)
	v.nonEmpty("database.name", c.Database.Name)
	v.oneOf("database.sslMode", c.Database.SSLMode, sslModes)
	v.atLeast("database.maxConns", int64(c.Database.MaxConns), 1)
	v.nonEmpty("database.user", c.Database.User)

	v.nonEmpty("rabbitmq.host", c.RabbitMQ.Host)
	// The client reads the broker's address from the URL; one that does not parse would fail
	// every connection attempt with an error quoting the URL, password included.
	if h := c.RabbitMQ.Host; strings.TrimSpace(h) != "" {
		if u, err := url.Parse(c.RabbitMQ.URL()); err != nil || u.Hostname() != h {
			v.add("rabbitmq.host", "must be a host name or an IP address, got %q", h)
		}
	}
	v.port("rabbitmq.port", c.RabbitMQ.Port)
	v.nonEmpty("rabbitmq.vhost", c.RabbitMQ.VHost)
	v.nonEmpty("rabbitmq.exchange", c.RabbitMQ.Exchange)
	// The queues are named after the exchange, and RabbitMQ refuses to declare either with
	// this prefix.
	if strings.HasPrefix(c.RabbitMQ.Exchange, "amq.") {
		v.add("rabbitmq.exchange", "must not start with \"amq.\", which RabbitMQ reserves for its own exchanges and queues, got %q", c.RabbitMQ.Exchange)
	}
	if p := c.RabbitMQ.Prefetch; p < 1 || p > maxPrefetch {
		v.add("rabbitmq.prefetch", "must be between 1 and %d, got %d", maxPrefetch, p)
	}
	v.nonEmpty("rabbitmq.user", c.RabbitMQ.User)

	v.nonEmpty("auth.issuer", c.Auth.Issuer)
	// A token's expiry is written in whole seconds, rounded down: a shorter lifetime could
	// give a token that has expired when it is issued. Non-positive ones fail below.
	if ttl := c.Auth.TokenTTL.D(); ttl > 0 && ttl < time.Second {
		v.add("auth.tokenTtl", "must be at least 1s (tokens expire on a whole second), got %s", ttl)
	}
	if n := len(c.Auth.JWTSecret); n < minJWTSecretBytes {
		v.add("auth.jwtSecret", "must be at least %d bytes, got %d", minJWTSecretBytes, n)
	}
	v.atLeast("auth.loginAttemptsPerMinute", int64(c.Auth.LoginAttemptsPerMinute), 1)
	v.atLeast("auth.loginAttemptsPerAddressPerMinute", int64(c.Auth.LoginAttemptsPerAddressPerMinute), 1)

	// NaN fails both comparisons, so it is rejected too.
	if p := c.Orders.CompletionProbability; !(p >= 0 && p <= 1) {
		v.add("orders.completionProbability", "must be between 0 and 1, got %g", p)
	}
	// An order expires expireAfter after it was placed, and its payment takes paymentDelay
	// once the worker has taken it up: no order would ever complete.
	if ea, pd := c.Orders.ExpireAfter.D(), c.Orders.PaymentDelay.D(); pd > 0 && ea > 0 && ea <= pd {
		v.add("orders.expireAfter", "must be longer than orders.paymentDelay (%s%s), got %s: every order would expire before its payment could complete it", pd, v.where("orders.paymentDelay"), ea)
	}
	// Shorter intervals would keep a core busy on scans that find nothing. Non-positive ones
	// fail below.
	if d := c.Orders.ExpiryInterval.D(); d > 0 && d < minExpiryInterval {
		v.add("orders.expiryInterval", "must be at least %s, got %s: the cron job would sweep the orders table without a pause", minExpiryInterval, d)
	}
	if d := c.Outbox.PollInterval.D(); d > 0 && d < minPollInterval {
		v.add("outbox.pollInterval", "must be at least %s, got %s: every process would scan the outbox table without a pause", minPollInterval, d)
	}
	v.atLeast("orders.expiryBatchSize", int64(c.Orders.ExpiryBatchSize), 1)
	v.atLeast("orders.maxPaymentsInFlight", int64(c.Orders.MaxPaymentsInFlight), 1)
	if n := c.Orders.MaxPaymentsInFlight; n > maxPaymentsInFlight {
		v.add("orders.maxPaymentsInFlight", "must be at most %d, got %d", maxPaymentsInFlight, n)
	}
	v.atLeast("orders.intakeConnections", int64(c.Orders.IntakeConnections), 1)
	// The intake's writers take their connections from the process's pool: one beyond its
	// size would only hold the orders it took while it waits for a connection.
	if n, max := c.Orders.IntakeConnections, c.Database.MaxConns; max >= 1 && n > max {
		v.add("orders.intakeConnections", "must be at most database.maxConns (%d%s), got %d: the intake stores orders on connections of that pool; lower orders.intakeConnections or raise database.maxConns", max, v.where("database.maxConns"), n)
	}
	v.atLeast("orders.intakeGroupSize", int64(c.Orders.IntakeGroupSize), 1)
	v.atLeast("outbox.batchSize", int64(c.Outbox.BatchSize), 1)

	v.oneOf("log.level", c.Log.Level, logLevels)
	v.atLeast("runtime.memoryLimitMiB", c.Runtime.MemoryLimitMiB, 0)
	if n := c.Runtime.MemoryLimitMiB; n > maxMemoryLimitMiB {
		v.add("runtime.memoryLimitMiB", "must be at most %d (1 TiB), got %d", maxMemoryLimitMiB, n)
	}
	v.oneOf("log.format", c.Log.Format, logFormats)

	if n := utf8.RuneCountInString(c.Admin.Name); blank(c.Admin.Name) || n > maxNameChars {
		v.add("admin.name", "must be 1 to %d characters and not blank, got %d characters", maxNameChars, n)
	} else if !utf8.ValidString(c.Admin.Name) || strings.IndexByte(c.Admin.Name, 0) >= 0 {
		// PostgreSQL's text holds neither; the API refuses them in a user's name too.
		v.add("admin.name", "must be valid UTF-8 without NUL characters")
	}
	v.email("admin.email", c.Admin.Email)
	if n := len(c.Admin.Password); utf8.RuneCountInString(c.Admin.Password) < minPasswordChars || n > maxPasswordBytes {
		v.add("admin.password", "must be at least %d characters and at most %d bytes, got %d bytes", minPasswordChars, maxPasswordBytes, n)
	}

	// Every duration, including any added later, must be positive.
	root := reflect.ValueOf(c).Elem()
	for _, l := range leaves() {
		if d, ok := root.FieldByIndex(l.index).Interface().(Duration); ok && d <= 0 {
			v.add(l.path, "must be a positive duration, got %s", d)
		}
	}

	return errors.Join(v.errs...)
}

// validator collects the problems of one configuration.
type validator struct {
	errs   []error
	source func(key string) string
}

// blank reports whether s shows nothing: only white space, control characters and characters
// that are not drawn. It is domain.Blank (see there), which this package, importing nothing of
// the project, keeps a copy of, so that the administrator's name follows the API's rule for
// every name; a test keeps the two the same.
func blank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		switch {
		case unicode.IsSpace(r), unicode.IsControl(r), r == '\u2800':
			return false
		case unicode.Is(unicode.Prepended_Concatenation_Mark, r):
			return true
		}
		return !unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
	}) < 0
}

func (v *validator) add(key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if v.source != nil {
		msg += " (" + v.source(key) + ")"
	}
	v.errs = append(v.errs, fmt.Errorf("configuration: %s: %s", key, msg))
}

// where is ", " and where the value of key came from, or "" when that is not known.
func (v *validator) where(key string) string {
	if v.source == nil {
		return ""
	}
	return ", " + v.source(key)
}

func (v *validator) nonEmpty(key, s string) {
	if strings.TrimSpace(s) == "" {
		v.add(key, "must not be empty")
	}
}

func (v *validator) atLeast(key string, n, least int64) {
	if n < least {
		v.add(key, "must be at least %d, got %d", least, n)
	}
}

func (v *validator) port(key string, p int) {
	if p < 1 || p > 65535 {
		v.add(key, "must be a port between 1 and 65535, got %d", p)
	}
}

func (v *validator) oneOf(key, s string, allowed []string) {
	if !slices.Contains(allowed, s) {
		v.add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), s)
	}
}

// address accepts host:port with a numeric port; the host may be empty (all interfaces)
// and the port 0 (a free port, which tests use).
func (v *validator) address(key, s string) {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		v.add(key, "must be host:port such as \":8080\" or \"127.0.0.1:8080\", got %q", s)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(key, "must have a numeric port between 0 and 65535, got %q", s)
	}
}

// email accepts a bare, lower-case ASCII address such as "admin@example.com". The API applies its
// own rule for every account's address to admin.email when it starts (api.EnsureAdmin).
func (v *validator) email(key, s string) {
	addr, err := mail.ParseAddress(s)
	switch {
	case err != nil || addr.Name != "" || addr.Address != s:
		v.add(key, "must be an e-mail address such as \"admin@example.com\", got %q", s)
	case !printableASCII(s):
		v.add(key, "must be written in ASCII (an internationalized domain in its xn-- form), got %q", s)
	case s != strings.ToLower(s):
		v.add(key, "must be lower-case, got %q", s)
	case utf8.RuneCountInString(s) > maxEmailChars:
		v.add(key, "must be at most %d characters, got %d", maxEmailChars, utf8.RuneCountInString(s))
	}
}

// printableASCII reports whether s holds only printable ASCII characters, as every account's
// e-mail address must (api's printableASCII).
func printableASCII(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }) < 0
}
