package configuration

import (
	"errors"
	"fmt"
	"reflect"
)

// applyEnv overrides every key whose environment variable lookup reports as set, even
// to the empty string. It reports every bad value, each naming the variable and the key.
func applyEnv(cfg *Config, lookup func(string) (string, bool)) error {
	root := reflect.ValueOf(cfg).Elem()
	var errs []error
	for _, l := range leaves() {
		text, ok := lookup(l.env)
		if !ok {
			continue
		}
		if err := setValue(root.FieldByIndex(l.index), text); err != nil {
			errs = append(errs, fmt.Errorf("configuration: %s (key %s): %w", l.env, l.path, err))
		}
	}
	return errors.Join(errs...)
}
