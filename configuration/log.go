package configuration

import (
	"log/slog"
	"reflect"
	"strings"
)

// sensitiveKeys are the keys whose values never appear in a log line.
var sensitiveKeys = map[string]bool{
	"database.password": true,
	"rabbitmq.password": true,
	"auth.jwtSecret":    true,
	"admin.password":    true,
}

// LogValue lets slog log the whole configuration, one group per section, with every
// password and the JWT secret replaced by "[redacted]" (or "" when unset).
func (c Config) LogValue() slog.Value {
	root := reflect.ValueOf(c)
	var sections []slog.Attr
	var section string
	var attrs []any
	flush := func() {
		if section != "" {
			sections = append(sections, slog.Group(section, attrs...))
		}
	}
	for _, l := range leaves() {
		name, key, _ := strings.Cut(l.path, ".")
		if name != section {
			flush()
			section, attrs = name, nil
		}
		value := formatValue(root.FieldByIndex(l.index))
		if sensitiveKeys[l.path] && value != "" {
			value = "[redacted]"
		}
		attrs = append(attrs, slog.String(key, value))
	}
	flush()
	return slog.GroupValue(sections...)
}
