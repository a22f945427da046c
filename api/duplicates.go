package api

import (
	"strconv"
	"strings"

	"github.com/go-faster/jx"
)

// duplicateKey returns the JSON path ("items[0].quantity") of the first object key that
// appears twice in one object of the JSON document body (at any depth), or "" if there is
// none or body is not JSON (which the operation's decoder then refuses). JSON parsers
// disagree about which of two equal keys counts, so a body with one is refused rather than
// read one way here and another way by a proxy or log in front of the API.
func duplicateKey(body []byte) string {
	var f duplicateFinder
	_ = f.find(jx.DecodeBytes(body))
	return f.dup
}

// duplicateFinder walks a JSON document for a repeated key. It keeps the path to the value
// it is at as a stack of segments and spells it out only for the duplicate, so that a
// deeply nested document costs no more than before paths were reported.
type duplicateFinder struct {
	path []pathSegment
	dup  string
}

// pathSegment is an object key, or an array index when key is unset.
type pathSegment struct {
	key   string
	isKey bool
	index int
}

func (f *duplicateFinder) find(d *jx.Decoder) error {
	switch d.Next() {
	case jx.Object:
		seen := make(map[string]struct{})
		return d.ObjBytes(func(d *jx.Decoder, key []byte) error {
			f.path = append(f.path, pathSegment{key: string(key), isKey: true})
			defer func() { f.path = f.path[:len(f.path)-1] }()
			if _, ok := seen[string(key)]; ok && f.dup == "" {
				f.dup = f.spell()
			}
			seen[string(key)] = struct{}{}
			return f.find(d)
		})
	case jx.Array:
		i := 0
		return d.Arr(func(d *jx.Decoder) error {
			f.path = append(f.path, pathSegment{index: i})
			defer func() { f.path = f.path[:len(f.path)-1] }()
			i++
			return f.find(d)
		})
	default:
		return d.Skip()
	}
}

// spell returns the current path as FieldError names a field.
func (f *duplicateFinder) spell() string {
	var b strings.Builder
	for _, s := range f.path {
		if s.isKey {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.key)
			continue
		}
		b.WriteString("[" + strconv.Itoa(s.index) + "]")
	}
	return b.String()
}

// jsonPathKey is the path of the member key of the object at path, as FieldError names it.
func jsonPathKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonPathIndex is the path of element i of the array at path.
func jsonPathIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
