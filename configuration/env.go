package configuration

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// unknownVariables reports ORDERFLOW_* variables in environ that name no key, so that a
// misspelt override is an error rather than silently ignored. ORDERFLOW_CONFIG_DIR,
// cmd/migrationgen's ORDERFLOW_MIGRATIONGEN_DSN and the test suite's ORDERFLOW_TEST_*
// variables are not keys but are allowed, so that a shell that exports them still starts
// the processes.
func unknownVariables(environ []string) error {
	known := map[string]bool{EnvPrefix + "CONFIG_DIR": true, EnvPrefix + "MIGRATIONGEN_DSN": true}
	for _, l := range leaves() {
		known[l.env] = true
	}
	var errs []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || known[name] || strings.HasPrefix(name, EnvPrefix+"TEST_") {
			continue
		}
		errs = append(errs, fmt.Errorf("configuration: %s: no such key (see the configuration table in the README)", name))
	}
	return errors.Join(errs...)
}

// applyEnv overrides every key whose environment variable lookup reports as set, even
// to the empty string. It reports every bad value, each naming the variable and the key.
// When setBy is not nil, it records there the variable of every key it overrode.
func applyEnv(cfg *Config, lookup func(string) (string, bool), setBy map[string]string) error {
	root := reflect.ValueOf(cfg).Elem()
	var errs []error
	for _, l := range leaves() {
		text, ok := lookup(l.env)
		if !ok {
			continue
		}
		if err := setValue(root.FieldByIndex(l.index), text); err != nil {
			errs = append(errs, fmt.Errorf("configuration: %s (key %s): %w", l.env, l.path, err))
			continue
		}
		if setBy != nil {
			setBy[l.path] = "set by " + l.env
		}
	}
	return errors.Join(errs...)
}
