package events

import (
	"reflect"
	"strings"
)

// jsonFields lists the JSON names of v's struct fields, in declaration order. Every field of
// the payloads is required, so this is also the list Decode checks.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}
