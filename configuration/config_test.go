package configuration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"orderflow/domain"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// absent marks a file that a test directory leaves out.
const absent = "\x00absent"

// validInstance and validSecrets are small, valid files; the committed files are tested
// on their own.
const (
	validInstance = `{"orders": {"paymentDelay": "2s"}}`
	validSecrets  = `{
  "database": {"user": "app", "password": "pw"},
  "rabbitmq": {"user": "rabbit", "password": "carrot"},
  "auth": {"jwtSecret": "0123456789abcdef0123456789abcdef"},
  "admin": {"name": "Root", "email": "root@example.com", "password": "secret1"}
}`
)

// writeDir writes a configuration directory and returns its path.
func writeDir(t *testing.T, instance, secrets string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{InstanceFile: instance, SecretsFile: secrets} {
		if content == absent {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// env returns a lookup function that sees only vars.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

var noEnv = env(nil)

// wantErr fails unless err is non-nil and its message contains every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestLoadValid(t *testing.T) {
	cfg, err := LoadWithEnv(writeDir(t, validInstance, validSecrets), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Orders.PaymentDelay = Duration(2 * time.Second)
	want.Database.User, want.Database.Password = "app", "pw"
	want.RabbitMQ.User, want.RabbitMQ.Password = "rabbit", "carrot"
	want.Auth.JWTSecret = "0123456789abcdef0123456789abcdef"
	want.Admin = Admin{Name: "Root", Email: "root@example.com", Password: "secret1"}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("got %+v\nwant %+v", *cfg, want)
	}
}

// TestLoadAcceptsAByteOrderMark: a file that an editor saved with a UTF-8 byte-order mark
// loads as without it.
func TestLoadAcceptsAByteOrderMark(t *testing.T) {
	withMark, err := LoadWithEnv(writeDir(t, "\ufeff"+validInstance, "\ufeff"+validSecrets), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	without, err := LoadWithEnv(writeDir(t, validInstance, validSecrets), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(withMark, without) {
		t.Errorf("with a byte-order mark %+v\nwithout %+v", withMark, without)
	}
}

func TestLoadCommittedFiles(t *testing.T) {
	cfg, err := LoadWithEnv(".", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Auth.JWTSecret = ShippedJWTSecret
	want.Admin.Password = ShippedAdminPassword
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("got %+v\nwant %+v", *cfg, want)
	}
}

func TestShippedSecrets(t *testing.T) {
	cfg, err := LoadWithEnv(".", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range cfg.ShippedSecrets() {
		got = append(got, k.Path+" "+k.Env)
	}
	if want := []string{"auth.jwtSecret ORDERFLOW_AUTH_JWTSECRET", "admin.password ORDERFLOW_ADMIN_PASSWORD"}; !slices.Equal(got, want) {
		t.Errorf("committed files: shipped secrets %q, want %q", got, want)
	}
	cfg.Admin.Password = "another-password"
	if got := cfg.ShippedSecrets(); len(got) != 1 || got[0].Path != "auth.jwtSecret" {
		t.Errorf("with another admin password: %+v, want only auth.jwtSecret", got)
	}
	if cfg, err = LoadWithEnv(writeDir(t, validInstance, validSecrets), noEnv); err != nil {
		t.Fatal(err)
	}
	if got := cfg.ShippedSecrets(); len(got) != 0 {
		t.Errorf("other secrets reported as shipped: %+v", got)
	}
}

// TestCommittedInstanceMatchesDefaults keeps instance.json, the documented defaults, and
// Defaults() in agreement: instance.json carries every tunable, each at its default.
func TestCommittedInstanceMatchesDefaults(t *testing.T) {
	data, err := os.ReadFile(InstanceFile)
	if err != nil {
		t.Fatal(err)
	}
	var sections map[string]map[string]json.RawMessage
	if err := json.Unmarshal(data, &sections); err != nil {
		t.Fatal(err)
	}
	var present []string
	for section, keys := range sections {
		for key := range keys {
			present = append(present, section+"."+key)
		}
	}
	var tunables []string
	for _, k := range KeyTable() {
		if k.File == InstanceFile {
			tunables = append(tunables, k.Path)
		}
	}
	slices.Sort(present)
	slices.Sort(tunables)
	if !slices.Equal(present, tunables) {
		t.Errorf("instance.json has keys %q, want every tunable %q", present, tunables)
	}

	var fromFile Config
	if err := decodeFile(InstanceFile, InstanceFile, &fromFile, nil); err != nil {
		t.Fatal(err)
	}
	got, def := reflect.ValueOf(fromFile), reflect.ValueOf(Defaults())
	for _, l := range leaves() {
		if fileOf(l.path) != InstanceFile {
			continue
		}
		if g, w := got.FieldByIndex(l.index).Interface(), def.FieldByIndex(l.index).Interface(); g != w {
			t.Errorf("instance.json %s = %v, Defaults() has %v", l.path, g, w)
		}
	}
}

func TestCommittedSecretsHoldOnlySecrets(t *testing.T) {
	var fromFile Config
	if err := decodeFile(SecretsFile, SecretsFile, &fromFile, nil); err != nil {
		t.Fatal(err)
	}
	if fromFile.Admin.Email != "admin@orderprocessing.local" || fromFile.Database.User != "postgres" || fromFile.RabbitMQ.User != "guest" {
		t.Errorf("secrets.json = %+v, want the development credentials", fromFile)
	}
}

func TestDefaultsWithSecretsValidate(t *testing.T) {
	cfg := Defaults()
	cfg.Auth.JWTSecret = strings.Repeat("k", 32)
	cfg.Admin.Password = "123456"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Without the two secrets that have no default, exactly those two keys fail.
	bare := Defaults()
	err := bare.Validate()
	wantErr(t, err, "configuration: auth.jwtSecret: must be at least 32 bytes, got 0", "configuration: admin.password:")
	if n := len(strings.Split(err.Error(), "\n")); n != 2 {
		t.Errorf("got %d problems, want 2: %v", n, err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name              string
		instance, secrets string
		want              []string
	}{
		{"missing instance.json", absent, validSecrets, []string{"instance.json: file not found"}},
		{"missing secrets.json", validInstance, absent, []string{"secrets.json: file not found"}},
		{"missing both", absent, absent, []string{"instance.json: file not found"}},
		{"instance.json missing comma", "{\n  \"log\": {\"level\": \"info\"\n  \"format\": \"json\"}\n}", validSecrets,
			[]string{"instance.json: malformed JSON at line 3, column 3: invalid character"}},
		{"secrets.json trailing comma", validInstance, "{\n\"admin\": {\"password\": \"secret1\",}\n}",
			[]string{"secrets.json: malformed JSON at line 2"}},
		{"instance.json empty", "", validSecrets, []string{"instance.json: malformed JSON: the file is empty"}},
		{"secrets.json truncated", validInstance, `{"admin": {"password": "secr`, []string{"secrets.json: malformed JSON at line 1", "unexpected end of file"}},
		{"instance.json trailing data", validInstance + "\n{}", validSecrets,
			[]string{"instance.json: unexpected data after the top-level object (line 2)"}},
		{"instance.json top level not an object", `["log"]`, validSecrets,
			[]string{"instance.json: the top level must be a JSON object, got an array"}},
		{"instance.json unknown nested key", "{\n  \"orders\": {\n    \"paymentDelayy\": \"5s\"\n  }\n}", validSecrets,
			[]string{`instance.json: unknown key "orders.paymentDelayy" (line 3)`}},
		{"instance.json unknown top-level key", `{"metrics": {"address": ":9090"}}`, validSecrets,
			[]string{`instance.json: unknown key "metrics"`}},
		{"instance.json key in the wrong case", `{"orders": {"PaymentDelay": "5s"}}`, validSecrets,
			[]string{`instance.json: unknown key "orders.PaymentDelay"`}},
		{"secrets.json unknown nested key", validInstance, `{"admin": {"phone": "123"}}`,
			[]string{`secrets.json: unknown key "admin.phone"`}},
		{"secrets.json unknown top-level key", validInstance, `{"smtp": {"password": "x"}}`,
			[]string{`secrets.json: unknown key "smtp"`}},
		{"secret in instance.json", `{"auth": {"tokenTtl": "1h", "jwtSecret": "0123456789abcdef0123456789abcdef"}}`, validSecrets,
			[]string{`instance.json: key "auth.jwtSecret" belongs in secrets.json, not instance.json (line 1)`}},
		{"tunable in secrets.json", validInstance, `{"database": {"host": "db"}}`,
			[]string{`secrets.json: key "database.host"`, "belongs in instance.json, not secrets.json"}},
		{"duplicate key", `{"log": {"level": "info", "level": "debug"}}`, validSecrets,
			[]string{`instance.json: duplicate key "log.level"`}},
		{"string for an integer", `{"database": {"port": "5432"}}`, validSecrets,
			[]string{`instance.json: database.port: must be an integer, got the string "5432"`}},
		{"fraction for an integer", `{"database": {"port": 5432.5}}`, validSecrets,
			[]string{`instance.json: database.port: must be an integer, got "5432.5"`}},
		{"number for a duration", `{"orders": {"paymentDelay": 5}}`, validSecrets,
			[]string{`instance.json: orders.paymentDelay: must be a duration string such as "5s" or "10m", got 5 (line 1)`}},
		{"bad duration string", `{"orders": {"expireAfter": "ten minutes"}}`, validSecrets,
			[]string{`instance.json: orders.expireAfter: not a duration such as "5s" or "10m": "ten minutes"`}},
		{"number for a string", validInstance, `{"database": {"password": 1234}}`,
			[]string{`secrets.json: database.password: must be a string, got a number`}},
		{"string for a number", `{"orders": {"completionProbability": "0.5"}}`, validSecrets,
			[]string{`instance.json: orders.completionProbability: must be a number, got the string "0.5"`}},
		{"null value", `{"log": {"level": null}}`, validSecrets,
			[]string{`instance.json: log.level: must be a string, got null`}},
		{"section not an object", `{"http": 8080}`, validSecrets,
			[]string{`instance.json: "http" must be a JSON object, got 8080`}},
		{"object for a value", `{"http": {"address": {"port": 8080}}}`, validSecrets,
			[]string{`instance.json: http.address: must be a string, got an object`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadWithEnv(writeDir(t, tt.instance, tt.secrets), noEnv)
			if cfg != nil {
				t.Errorf("got a config with the error")
			}
			wantErr(t, err, append([]string{"configuration: "}, tt.want...)...)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

// TestUnreadableFileNamesTheUser: a file the process may not read (tests run as root in CI,
// who may read any file, so the error is made here) names the user that must be able to.
func TestUnreadableFileNamesTheUser(t *testing.T) {
	denied := &fs.PathError{Op: "open", Path: "/app/configuration/secrets.json", Err: syscall.EACCES}
	err := readError("/app/configuration/secrets.json", denied)
	want := fmt.Sprintf("read /app/configuration/secrets.json: open /app/configuration/secrets.json: permission denied (this process runs as uid %d, which must be able to read it)", os.Getuid())
	if err.Error() != want || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("got %q, want %q wrapping fs.ErrPermission", err, want)
	}
	if err := readError("instance.json", syscall.EIO); strings.Contains(err.Error(), "uid") {
		t.Errorf("an error that is not a permission's names the user: %v", err)
	}
}

func TestValidate(t *testing.T) {
	valid := func() Config {
		cfg := Defaults()
		cfg.Auth.JWTSecret = strings.Repeat("s", 32)
		cfg.Admin.Password = "Admin@12345"
		return cfg
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"probability above 1", func(c *Config) { c.Orders.CompletionProbability = 1.5 },
			"configuration: orders.completionProbability: must be between 0 and 1, got 1.5"},
		{"probability below 0", func(c *Config) { c.Orders.CompletionProbability = -0.1 },
			"configuration: orders.completionProbability: must be between 0 and 1, got -0.1"},
		{"zero duration", func(c *Config) { c.Orders.PaymentDelay = 0 },
			"configuration: orders.paymentDelay: must be a positive duration, got 0s"},
		{"negative duration", func(c *Config) { c.Outbox.Retention = Duration(-time.Hour) },
			"configuration: outbox.retention: must be a positive duration, got -1h0m0s"},
		{"payments in flight beyond the broker's channels", func(c *Config) { c.Orders.MaxPaymentsInFlight = 4_200_000 },
			"configuration: orders.maxPaymentsInFlight: must be at most 1000000, got 4200000"},
		{"orders expiring before their payment", func(c *Config) { c.Orders.ExpireAfter = Duration(5 * time.Second) },
			"configuration: orders.expireAfter: must be longer than orders.paymentDelay (5s), got 5s: every order would expire before its payment could complete it"},
		{"broker host that no URL holds", func(c *Config) { c.RabbitMQ.Host = "rabbit mq" },
			`configuration: rabbitmq.host: must be a host name or an IP address, got "rabbit mq"`},
		{"http.shutdownTimeout", func(c *Config) { c.HTTP.ShutdownTimeout = 0 }, "configuration: http.shutdownTimeout: must be a positive duration"},
		{"http.requestTimeout", func(c *Config) { c.HTTP.RequestTimeout = 0 }, "configuration: http.requestTimeout: must be a positive duration"},
		{"auth.tokenTtl", func(c *Config) { c.Auth.TokenTTL = 0 }, "configuration: auth.tokenTtl: must be a positive duration"},
		{"auth.tokenTtl under a second", func(c *Config) { c.Auth.TokenTTL = Duration(999 * time.Millisecond) },
			"configuration: auth.tokenTtl: must be at least 1s (tokens expire on a whole second), got 999ms"},
		{"orders.expireAfter", func(c *Config) { c.Orders.ExpireAfter = 0 }, "configuration: orders.expireAfter: must be a positive duration"},
		{"orders.expiryInterval", func(c *Config) { c.Orders.ExpiryInterval = 0 }, "configuration: orders.expiryInterval: must be a positive duration"},
		{"outbox.pollInterval", func(c *Config) { c.Outbox.PollInterval = 0 }, "configuration: outbox.pollInterval: must be a positive duration"},
		{"orders.expiryInterval too short", func(c *Config) { c.Orders.ExpiryInterval = Duration(time.Nanosecond) },
			"configuration: orders.expiryInterval: must be at least 100ms, got 1ns: the cron job would sweep the orders table without a pause"},
		{"outbox.pollInterval too short", func(c *Config) { c.Outbox.PollInterval = Duration(time.Millisecond) },
			"configuration: outbox.pollInterval: must be at least 10ms, got 1ms: every process would scan the outbox table without a pause"},
		{"database port 0", func(c *Config) { c.Database.Port = 0 },
			"configuration: database.port: must be a port between 1 and 65535, got 0"},
		{"rabbitmq port too large", func(c *Config) { c.RabbitMQ.Port = 65536 },
			"configuration: rabbitmq.port: must be a port between 1 and 65535, got 65536"},
		{"maxConns", func(c *Config) { c.Database.MaxConns = 0 }, "configuration: database.maxConns: must be at least 1, got 0"},
		{"prefetch 0", func(c *Config) { c.RabbitMQ.Prefetch = 0 }, "configuration: rabbitmq.prefetch: must be between 1 and 65535, got 0"},
		{"prefetch too large", func(c *Config) { c.RabbitMQ.Prefetch = 70000 }, "configuration: rabbitmq.prefetch: must be between 1 and 65535, got 70000"},
		{"expiry batch size", func(c *Config) { c.Orders.ExpiryBatchSize = 0 }, "configuration: orders.expiryBatchSize: must be at least 1, got 0"},
		{"payments in flight", func(c *Config) { c.Orders.MaxPaymentsInFlight = 0 }, "configuration: orders.maxPaymentsInFlight: must be at least 1, got 0"},
		{"intake connections", func(c *Config) { c.Orders.IntakeConnections = 0 }, "configuration: orders.intakeConnections: must be at least 1, got 0"},
		{"intake connections beyond the pool", func(c *Config) { c.Orders.IntakeConnections, c.Database.MaxConns = 5, 4 },
			"configuration: orders.intakeConnections: must be at most database.maxConns (4), got 5: the intake stores orders on connections of that pool; lower orders.intakeConnections or raise database.maxConns"},
		{"intake group size", func(c *Config) { c.Orders.IntakeGroupSize = 0 }, "configuration: orders.intakeGroupSize: must be at least 1, got 0"},
		{"outbox batch size", func(c *Config) { c.Outbox.BatchSize = -1 }, "configuration: outbox.batchSize: must be at least 1, got -1"},
		{"maxBodyBytes", func(c *Config) { c.HTTP.MaxBodyBytes = 0 }, "configuration: http.maxBodyBytes: must be at least 1, got 0"},
		{"maxRequestsInFlight", func(c *Config) { c.HTTP.MaxRequestsInFlight = 0 }, "configuration: http.maxRequestsInFlight: must be at least 1, got 0"},
		{"negative memory limit", func(c *Config) { c.Runtime.MemoryLimitMiB = -1 }, "configuration: runtime.memoryLimitMiB: must be at least 0, got -1"},
		{"memory limit beyond a TiB", func(c *Config) { c.Runtime.MemoryLimitMiB = 1<<20 + 1 },
			"configuration: runtime.memoryLimitMiB: must be at most 1048576 (1 TiB), got 1048577"},
		{"short JWT secret", func(c *Config) { c.Auth.JWTSecret = strings.Repeat("s", 31) },
			"configuration: auth.jwtSecret: must be at least 32 bytes, got 31"},
		{"malformed admin email", func(c *Config) { c.Admin.Email = "admin.example.com" },
			`configuration: admin.email: must be an e-mail address such as "admin@example.com", got "admin.example.com"`},
		{"admin email with a display name", func(c *Config) { c.Admin.Email = "Admin <admin@example.com>" },
			"configuration: admin.email: must be an e-mail address"},
		{"upper-case admin email", func(c *Config) { c.Admin.Email = "Admin@Example.com" },
			`configuration: admin.email: must be lower-case, got "Admin@Example.com"`},
		{"admin email not in ASCII", func(c *Config) { c.Admin.Email = "\u212Aate@example.com" },
			"configuration: admin.email: must be written in ASCII (an internationalized domain in its xn-- form), got \"\u212Aate@example.com\""},
		{"long admin email", func(c *Config) { c.Admin.Email = strings.Repeat("a", 95) + "@x.com" },
			"configuration: admin.email: must be at most 100 characters, got 101"},
		{"short admin password", func(c *Config) { c.Admin.Password = "12345" },
			"configuration: admin.password: must be at least 6 characters and at most 72 bytes, got 5 bytes"},
		{"long admin password", func(c *Config) { c.Admin.Password = strings.Repeat("p", 73) },
			"configuration: admin.password: must be at least 6 characters and at most 72 bytes, got 73 bytes"},
		{"empty admin name", func(c *Config) { c.Admin.Name = "" }, "configuration: admin.name: must be 1 to 100 characters and not blank, got 0"},
		{"blank admin name", func(c *Config) { c.Admin.Name = "   " }, "configuration: admin.name: must be 1 to 100 characters and not blank"},
		{"invisible admin name", func(c *Config) { c.Admin.Name = "\u200b" }, "configuration: admin.name: must be 1 to 100 characters and not blank, got 1 characters"},
		{"admin name with NUL", func(c *Config) { c.Admin.Name = "Ad\x00min" }, "configuration: admin.name: must be valid UTF-8 without NUL characters"},
		{"admin name not UTF-8", func(c *Config) { c.Admin.Name = "Ad\xffmin" }, "configuration: admin.name: must be valid UTF-8 without NUL characters"},
		{"long admin name", func(c *Config) { c.Admin.Name = strings.Repeat("é", 101) },
			"configuration: admin.name: must be 1 to 100 characters and not blank, got 101 characters"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" },
			`configuration: log.level: must be one of debug, info, warn, error, got "verbose"`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `configuration: log.format: must be one of json, text, got "xml"`},
		{"address without port", func(c *Config) { c.HTTP.Address = "localhost" },
			`configuration: http.address: must be host:port such as ":8080" or "127.0.0.1:8080", got "localhost"`},
		{"address with a named port", func(c *Config) { c.HTTP.Address = ":http" },
			`configuration: http.address: must have a numeric port between 0 and 65535, got ":http"`},
		{"address port too large", func(c *Config) { c.HTTP.Address = "127.0.0.1:70000" },
			`configuration: http.address: must have a numeric port between 0 and 65535, got "127.0.0.1:70000"`},
		{"pprof address without port", func(c *Config) { c.HTTP.PprofAddress = "localhost" },
			`configuration: http.pprofAddress: must be host:port such as ":8080" or "127.0.0.1:8080", got "localhost"`},
		{"empty exchange", func(c *Config) { c.RabbitMQ.Exchange = "" }, "configuration: rabbitmq.exchange: must not be empty"},
		{"reserved exchange", func(c *Config) { c.RabbitMQ.Exchange = "amq.orders" },
			`configuration: rabbitmq.exchange: must not start with "amq.", which RabbitMQ reserves for its own exchanges and queues, got "amq.orders"`},
		{"empty rabbitmq host", func(c *Config) { c.RabbitMQ.Host = "" }, "configuration: rabbitmq.host: must not be empty"},
		{"empty database host", func(c *Config) { c.Database.Host = " " }, "configuration: database.host: must not be empty"},
		{"empty database name", func(c *Config) { c.Database.Name = "" }, "configuration: database.name: must not be empty"},
		{"empty database user", func(c *Config) { c.Database.User = "" }, "configuration: database.user: must not be empty"},
		{"empty vhost", func(c *Config) { c.RabbitMQ.VHost = "" }, "configuration: rabbitmq.vhost: must not be empty"},
		{"empty rabbitmq user", func(c *Config) { c.RabbitMQ.User = "" }, "configuration: rabbitmq.user: must not be empty"},
		{"sslMode", func(c *Config) { c.Database.SSLMode = "on" },
			`configuration: database.sslMode: must be one of disable, allow, prefer, require, verify-ca, verify-full, got "on"`},
		{"empty issuer", func(c *Config) { c.Auth.Issuer = "" }, "configuration: auth.issuer: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.change(&cfg)
			err := cfg.Validate()
			wantErr(t, err, tt.want)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("one change gave several problems: %v", err)
			}
		})
	}

	t.Run("accepted edge values", func(t *testing.T) {
		for _, change := range []func(*Config){
			func(c *Config) { c.Orders.CompletionProbability = 0 },
			func(c *Config) { c.Orders.CompletionProbability = 1 },
			func(c *Config) { c.HTTP.Address = "127.0.0.1:0" },
			func(c *Config) { c.HTTP.Address = "[::1]:8080" },
			func(c *Config) { c.Database.Port, c.RabbitMQ.Port = 1, 65535 },
			func(c *Config) { c.RabbitMQ.Prefetch = 65535 },
			func(c *Config) { c.Orders.MaxPaymentsInFlight = 1_000_000 },
			func(c *Config) { c.RabbitMQ.Host = "::1" },
			func(c *Config) { c.RabbitMQ.Host = "rabbit_mq.internal" },
			func(c *Config) { c.Admin.Password = "ñññññ!" },
			func(c *Config) { c.Admin.Name = strings.Repeat("é", 100) },
			func(c *Config) { c.Log.Level, c.Log.Format = "debug", "text" },
			func(c *Config) { c.Database.SSLMode = "verify-full" },
			func(c *Config) { c.Auth.TokenTTL = Duration(time.Second) },
			func(c *Config) { c.Orders.IntakeConnections, c.Database.MaxConns = 4, 4 },
		} {
			cfg := valid()
			change(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("every problem at once", func(t *testing.T) {
		cfg := valid()
		cfg.Orders.CompletionProbability = 2
		cfg.Database.Port = -1
		cfg.Log.Level = "loud"
		err := cfg.Validate()
		wantErr(t, err, "orders.completionProbability", "database.port", "log.level")
		if n := len(strings.Split(err.Error(), "\n")); n != 3 {
			t.Errorf("got %d lines, want 3: %v", n, err)
		}
	})

	t.Run("secrets stay out of messages", func(t *testing.T) {
		cfg := valid()
		cfg.Auth.JWTSecret = "tooshort-secret"
		cfg.Admin.Password = "pw1"
		err := cfg.Validate()
		wantErr(t, err, "auth.jwtSecret", "admin.password")
		if strings.Contains(err.Error(), "tooshort-secret") || strings.Contains(err.Error(), "pw1") {
			t.Errorf("message shows a secret: %v", err)
		}
	})
}

func TestLoadValidates(t *testing.T) {
	dir := writeDir(t, `{"orders": {"completionProbability": 1.5}}`, validSecrets)
	_, err := LoadWithEnv(dir, noEnv)
	want := "configuration: orders.completionProbability: must be between 0 and 1, got 1.5 (set in " + filepath.Join(dir, InstanceFile) + ", line 1)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name  string
		vars  map[string]string
		check func(*Config) bool
	}{
		{"string", map[string]string{"ORDERFLOW_DATABASE_HOST": "127.0.0.1"},
			func(c *Config) bool { return c.Database.Host == "127.0.0.1" }},
		{"int", map[string]string{"ORDERFLOW_DATABASE_PORT": "6543"},
			func(c *Config) bool { return c.Database.Port == 6543 }},
		{"int64", map[string]string{"ORDERFLOW_HTTP_MAXBODYBYTES": "2048"},
			func(c *Config) bool { return c.HTTP.MaxBodyBytes == 2048 }},
		{"float", map[string]string{"ORDERFLOW_ORDERS_COMPLETIONPROBABILITY": "0.25"},
			func(c *Config) bool { return c.Orders.CompletionProbability == 0.25 }},
		{"duration", map[string]string{"ORDERFLOW_ORDERS_PAYMENTDELAY": "1s"},
			func(c *Config) bool { return c.Orders.PaymentDelay.D() == time.Second }},
		{"address", map[string]string{"ORDERFLOW_HTTP_ADDRESS": "127.0.0.1:18080"},
			func(c *Config) bool { return c.HTTP.Address == "127.0.0.1:18080" }},
		{"secrets", map[string]string{
			"ORDERFLOW_AUTH_JWTSECRET":   "ffffffffffffffffffffffffffffffffffff",
			"ORDERFLOW_ADMIN_PASSWORD":   "hunter22",
			"ORDERFLOW_RABBITMQ_USER":    "svc",
			"ORDERFLOW_DATABASE_PASSWOR": "misspelt, so ignored",
		}, func(c *Config) bool {
			return c.Auth.JWTSecret == "ffffffffffffffffffffffffffffffffffff" && c.Admin.Password == "hunter22" &&
				c.RabbitMQ.User == "svc" && c.Database.Password == "pw"
		}},
		{"set to empty overrides", map[string]string{"ORDERFLOW_DATABASE_PASSWORD": ""},
			func(c *Config) bool { return c.Database.Password == "" }},
		{"unset does not override", map[string]string{"ORDERFLOW_LOG_LEVEL": "debug"},
			func(c *Config) bool {
				return c.Log.Level == "debug" && c.Orders.PaymentDelay.D() == 2*time.Second && c.Database.Password == "pw"
			}},
		{"admin email is lower-cased", map[string]string{"ORDERFLOW_ADMIN_EMAIL": "Boss@Example.COM"},
			func(c *Config) bool { return c.Admin.Email == "boss@example.com" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadWithEnv(writeDir(t, validInstance, validSecrets), env(tt.vars))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("%v gave %+v", tt.vars, *cfg)
			}
		})
	}
}

func TestEnvOverrideErrors(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		want []string
	}{
		{"bad integer", map[string]string{"ORDERFLOW_DATABASE_PORT": "abc"},
			[]string{`configuration: ORDERFLOW_DATABASE_PORT (key database.port): must be an integer, got "abc"`}},
		{"empty integer", map[string]string{"ORDERFLOW_OUTBOX_BATCHSIZE": ""},
			[]string{`configuration: ORDERFLOW_OUTBOX_BATCHSIZE (key outbox.batchSize): must be an integer, got ""`}},
		{"bad float", map[string]string{"ORDERFLOW_ORDERS_COMPLETIONPROBABILITY": "half"},
			[]string{`configuration: ORDERFLOW_ORDERS_COMPLETIONPROBABILITY (key orders.completionProbability): must be a number, got "half"`}},
		{"bad duration", map[string]string{"ORDERFLOW_ORDERS_PAYMENTDELAY": "soon"},
			[]string{`configuration: ORDERFLOW_ORDERS_PAYMENTDELAY (key orders.paymentDelay): not a duration such as "5s" or "10m": "soon"`}},
		{"several bad values", map[string]string{"ORDERFLOW_DATABASE_PORT": "x", "ORDERFLOW_OUTBOX_RETENTION": "forever", "ORDERFLOW_LOG_LEVEL": "loud"},
			[]string{"ORDERFLOW_DATABASE_PORT (key database.port)", "ORDERFLOW_OUTBOX_RETENTION (key outbox.retention)",
				`configuration: log.level: must be one of debug, info, warn, error, got "loud"`}},
		{"empty secret fails validation", map[string]string{"ORDERFLOW_AUTH_JWTSECRET": ""},
			[]string{"configuration: auth.jwtSecret: must be at least 32 bytes, got 0"}},
		{"out-of-range value fails validation", map[string]string{"ORDERFLOW_ORDERS_COMPLETIONPROBABILITY": "1.5"},
			[]string{"configuration: orders.completionProbability: must be between 0 and 1, got 1.5"}},
		// Lower-cased as Unicode, the Kelvin sign would pass as the "k" of another address.
		{"admin email with a Kelvin sign", map[string]string{"ORDERFLOW_ADMIN_EMAIL": "\u212Aate@example.com"},
			[]string{"configuration: admin.email: must be written in ASCII (an internationalized domain in its xn-- form), got \"\u212Aate@example.com\" (set by ORDERFLOW_ADMIN_EMAIL)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadWithEnv(writeDir(t, validInstance, validSecrets), env(tt.vars))
			wantErr(t, err, tt.want...)
		})
	}
}

// TestEveryKeyHasAVariable sets every key's variable to its default in KeyTable's
// notation on an empty Config, which must then equal Defaults(): every key is reachable
// from the environment, and KeyTable's defaults read back as the defaults.
func TestEveryKeyHasAVariable(t *testing.T) {
	vars := make(map[string]string)
	for _, k := range KeyTable() {
		vars[k.Env] = k.Default
	}
	var cfg Config
	if err := applyEnv(&cfg, env(vars), nil); err != nil {
		t.Fatal(err)
	}
	if want := Defaults(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
}

func TestKeyTable(t *testing.T) {
	keys := KeyTable()
	byPath := make(map[string]Key)
	envs := make(map[string]bool)
	for _, k := range keys {
		if k.Meaning == "" {
			t.Errorf("key %s has no meaning; add it to meanings", k.Path)
		}
		if want := "ORDERFLOW_" + strings.ToUpper(strings.ReplaceAll(k.Path, ".", "_")); k.Env != want {
			t.Errorf("key %s has variable %s, want %s", k.Path, k.Env, want)
		}
		if envs[k.Env] {
			t.Errorf("variable %s names two keys", k.Env)
		}
		if k.Env == "ORDERFLOW_CONFIG_DIR" {
			t.Errorf("key %s collides with the configuration directory variable", k.Path)
		}
		envs[k.Env] = true
		byPath[k.Path] = k
	}
	for path := range meanings {
		if _, ok := byPath[path]; !ok {
			t.Errorf("meanings has %s, which is no key", path)
		}
	}
	for path := range secretKeys {
		if k, ok := byPath[path]; !ok || k.File != SecretsFile {
			t.Errorf("secret key %s is not a key of secrets.json: %+v", path, k)
		}
	}
	if got := len(keys); got != 42 {
		t.Errorf("got %d keys, want 42: %q", got, slices.Collect(maps.Keys(byPath)))
	}
	for path, want := range map[string]Key{
		"orders.paymentDelay":   {Env: "ORDERFLOW_ORDERS_PAYMENTDELAY", File: InstanceFile, Default: "5s"},
		"orders.expiryInterval": {Env: "ORDERFLOW_ORDERS_EXPIRYINTERVAL", File: InstanceFile, Default: "1m"},
		"outbox.retention":      {Env: "ORDERFLOW_OUTBOX_RETENTION", File: InstanceFile, Default: "168h"},
		"http.maxBodyBytes":     {Env: "ORDERFLOW_HTTP_MAXBODYBYTES", File: InstanceFile, Default: "65536"},
		"auth.jwtSecret":        {Env: "ORDERFLOW_AUTH_JWTSECRET", File: SecretsFile, Default: ""},
		"admin.email":           {Env: "ORDERFLOW_ADMIN_EMAIL", File: SecretsFile, Default: "admin@orderprocessing.local"},
	} {
		got := byPath[path]
		got.Path, got.Meaning = "", ""
		if got != want {
			t.Errorf("KeyTable %s = %+v, want %+v", path, got, want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second: "1s", 90 * time.Second: "1m30s", time.Hour: "1h", 168 * time.Hour: "168h",
		time.Hour + time.Second: "1h1s", 1500 * time.Millisecond: "1.5s", 0: "0s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	cfg, err := LoadWithEnv(writeDir(t, validInstance, validSecrets), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("configuration", "config", cfg)
	line := b.String()
	for _, want := range []string{"config.orders.paymentDelay=2s", "config.database.user=app", "config.admin.email=root@example.com",
		"config.database.password=[redacted]", "config.auth.jwtSecret=[redacted]", "config.admin.password=[redacted]"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q: %s", want, line)
		}
	}
	for _, secret := range []string{"=pw ", "carrot", "0123456789abcdef", "secret1"} {
		if strings.Contains(line, secret) {
			t.Errorf("log line shows secret %q: %s", secret, line)
		}
	}
	for path := range sensitiveKeys {
		if !secretKeys[path] {
			t.Errorf("sensitive key %s is not a secrets.json key", path)
		}
	}
}

func TestUnknownVariables(t *testing.T) {
	environ := []string{
		"PATH=/usr/bin",
		"ORDERFLOW_CONFIG_DIR=/etc/orderflow",
		"ORDERFLOW_TEST_LOG=debug",
		"ORDERFLOW_MIGRATIONGEN_DSN=postgres://postgres@db.internal:5432/postgres",
		"ORDERFLOW_ORDERS_PAYMENTDELAY=1s",
	}
	if err := unknownVariables(environ); err != nil {
		t.Fatalf("known variables rejected: %v", err)
	}
	err := unknownVariables(append(environ, "ORDERFLOW_ORDERS_PAYMENTDELAYY=1s"))
	if err == nil || !strings.Contains(err.Error(), "ORDERFLOW_ORDERS_PAYMENTDELAYY: no such key") {
		t.Fatalf("misspelt variable: err = %v", err)
	}
}

// TestLoadReportsEveryVariableAtOnce: a misspelt variable and a bad value are reported by one
// start, not one per start.
func TestLoadReportsEveryVariableAtOnce(t *testing.T) {
	t.Setenv("ORDERFLOW_ORDERS_PAYMENTDELAYY", "1s")
	t.Setenv("ORDERFLOW_ORDERS_PAYMENTDELAY", "soon")
	_, err := Load(".")
	if err == nil || !strings.Contains(err.Error(), "ORDERFLOW_ORDERS_PAYMENTDELAYY: no such key") ||
		!strings.Contains(err.Error(), "ORDERFLOW_ORDERS_PAYMENTDELAY (key orders.paymentDelay): not a duration") {
		t.Fatalf("Load = %v, want both variables named", err)
	}
}

// TestConnectionURLs parses the URLs of the database and the broker the way the drivers do:
// every accepted host, name and virtual host must reach them as configured.
func TestConnectionURLs(t *testing.T) {
	for _, host := range []string{"localhost", "10.0.0.7", "::1"} {
		t.Run(host, func(t *testing.T) {
			d := Database{Host: host, Port: 6543, Name: "orders db", SSLMode: "disable", User: "app", Password: "p@ss:/w"}
			pg, err := pgx.ParseConfig(d.DSN())
			if err != nil {
				t.Fatalf("database URL of host %q: %v", host, err)
			}
			if pg.Host != host || pg.Port != 6543 || pg.Database != "orders db" || pg.User != "app" || pg.Password != "p@ss:/w" {
				t.Errorf("database URL of host %q reaches %s@%s:%d/%s", host, pg.User, pg.Host, pg.Port, pg.Database)
			}
			r := RabbitMQ{Host: host, Port: 5673, VHost: "/", User: "svc", Password: "p@ss:/w"}
			uri, err := amqp.ParseURI(r.URL())
			if err != nil {
				t.Fatalf("broker URL of host %q: %v", host, err)
			}
			if uri.Host != host || uri.Port != 5673 {
				t.Errorf("broker URL of host %q reaches %s:%d", host, uri.Host, uri.Port)
			}
		})
	}
}

// TestBrokerURLVirtualHosts: the broker URL names the configured virtual host, whatever
// characters its name holds.
func TestBrokerURLVirtualHosts(t *testing.T) {
	for _, vhost := range []string{"/", "orderflow", "/orderflow", "team/orders", "orders 2", "50%"} {
		r := RabbitMQ{Host: "localhost", Port: 5672, VHost: vhost, User: "guest", Password: "guest"}
		uri, err := amqp.ParseURI(r.URL())
		if err != nil {
			t.Errorf("broker URL of virtual host %q: %v", vhost, err)
			continue
		}
		if uri.Vhost != vhost {
			t.Errorf("broker URL %s of virtual host %q names %q", r.URL(), vhost, uri.Vhost)
		}
	}
}

// TestInvalidValueNamesWhereItCameFrom: a value that parses but is out of range is reported
// with the place that set it, the file and line or the environment variable, since an
// override hides the file's value and a missing key has none to look at.
func TestInvalidValueNamesWhereItCameFrom(t *testing.T) {
	dir := writeDir(t, "{\n  \"database\": {\n    \"port\": 0\n  }\n}", validSecrets)
	instance := filepath.Join(dir, InstanceFile)
	tests := []struct {
		name    string
		secrets string
		vars    map[string]string
		want    string
	}{
		{"from the file", validSecrets, nil,
			"configuration: database.port: must be a port between 1 and 65535, got 0 (set in " + instance + ", line 3)"},
		{"from a variable", validSecrets, map[string]string{"ORDERFLOW_DATABASE_PORT": "5432", "ORDERFLOW_ORDERS_EXPIRYBATCHSIZE": "-1"},
			"configuration: orders.expiryBatchSize: must be at least 1, got -1 (set by ORDERFLOW_ORDERS_EXPIRYBATCHSIZE)"},
		{"a limit that another key's variable sets", validSecrets, map[string]string{"ORDERFLOW_DATABASE_PORT": "5432", "ORDERFLOW_DATABASE_MAXCONNS": "2"},
			"configuration: orders.intakeConnections: must be at most database.maxConns (2, set by ORDERFLOW_DATABASE_MAXCONNS), got 4: the intake stores orders on connections of that pool; lower orders.intakeConnections or raise database.maxConns (set neither in " + instance + " nor by ORDERFLOW_ORDERS_INTAKECONNECTIONS)"},
		{"a variable over the file", validSecrets, map[string]string{"ORDERFLOW_DATABASE_PORT": "70000"},
			"configuration: database.port: must be a port between 1 and 65535, got 70000 (set by ORDERFLOW_DATABASE_PORT)"},
		{"a variable for a key the file has", `{"auth": {"jwtSecret": "0123456789abcdef0123456789abcdef"}, "admin": {"password": "secret1"}}`,
			map[string]string{"ORDERFLOW_DATABASE_PORT": "5432", "ORDERFLOW_AUTH_JWTSECRET": "short"},
			"configuration: auth.jwtSecret: must be at least 32 bytes, got 5 (set by ORDERFLOW_AUTH_JWTSECRET)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, SecretsFile), []byte(tt.secrets), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadWithEnv(dir, env(tt.vars))
			if err == nil || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
	t.Run("a key no file or variable sets", func(t *testing.T) {
		_, err := LoadWithEnv(writeDir(t, "{}", `{"auth": {"jwtSecret": "0123456789abcdef0123456789abcdef"}}`), noEnv)
		want := "configuration: admin.password: must be at least 6 characters and at most 72 bytes, got 0 bytes (set neither in "
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), SecretsFile+" nor by ORDERFLOW_ADMIN_PASSWORD)") {
			t.Errorf("got  %v\nwant %s...%s nor by ORDERFLOW_ADMIN_PASSWORD)", err, want, SecretsFile)
		}
	})
}

// TestSecretOfTheWrongTypeIsNotEchoed: a password written as a JSON number (unquoted) is an
// error that names the key but not the value, which stderr and container logs would keep.
func TestSecretOfTheWrongTypeIsNotEchoed(t *testing.T) {
	for key, secrets := range map[string]string{
		"admin.password":    `{"admin": {"password": 31415926}}`,
		"database.password": `{"database": {"password": 31415926e0}}`,
		"rabbitmq.password": `{"rabbitmq": {"password": -31415926}}`,
		"auth.jwtSecret":    `{"auth": {"jwtSecret": 31415926.5}}`,
	} {
		_, err := LoadWithEnv(writeDir(t, validInstance, secrets), noEnv)
		wantErr(t, err, "secrets.json: "+key+": must be a string")
		if err != nil && strings.Contains(err.Error(), "31415926") {
			t.Errorf("error %q shows the secret's value", err)
		}
	}
}

// TestBlankIsDomains keeps this package's copy of domain.Blank the same, over every character.
func TestBlankIsDomains(t *testing.T) {
	t.Parallel()
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if s := string(r); blank(s) != domain.Blank(s) {
			t.Fatalf("blank(%q) = %v, domain.Blank = %v", s, blank(s), domain.Blank(s))
		}
	}
}

// TestVariablesTheRepositoryNamesStartTheProcesses: every ORDERFLOW_* variable that the docs
// (but the benchmarks' log of past runs), scripts and deployment files name, or that Go code reads with os.Getenv, is a key or one of
// the variables that unknownVariables allows, so that exporting it, as the docs say to, does
// not stop a process. A pattern such as ORDERFLOW_TEST_* is not a name: the expression
// takes only whole words.
func TestVariablesTheRepositoryNamesStartTheProcesses(t *testing.T) {
	named := regexp.MustCompile(`\bORDERFLOW_[A-Z0-9_]*[A-Z0-9]\b`)
	read := regexp.MustCompile(`(?:Getenv|LookupEnv)\("(ORDERFLOW_[A-Z0-9_]+)"\)`)
	found := map[string]string{} // variable -> a file that names it
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "ent" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		name := d.Name()
		if name == "RESULTS.md" {
			return nil // the benchmarks' log, which names settings tried and given up
		}
		docs := strings.HasSuffix(name, ".md") || strings.HasSuffix(name, ".sh") || strings.HasSuffix(name, ".yml") ||
			name == "Makefile" || name == "Dockerfile" || path == filepath.Join("..", ".ci", "run")
		if !docs && !strings.HasSuffix(name, ".go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if docs {
			for _, m := range named.FindAllString(string(data), -1) {
				found[m] = path
			}
		}
		for _, m := range read.FindAllStringSubmatch(string(data), -1) {
			found[m[1]] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < 20 {
		t.Fatalf("found %d variables named in the repository; the walk is broken", len(found))
	}
	for _, v := range slices.Sorted(maps.Keys(found)) {
		if err := unknownVariables([]string{v + "=x"}); err != nil {
			t.Errorf("%s (named in %s) stops every process: %v", v, found[v], err)
		}
	}
}
