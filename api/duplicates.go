package api

import (
	"errors"
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
	if !hasDuplicate(jx.DecodeBytes(body)) {
		return ""
	}
	// Rare: walked again, keeping the path this time.
	var f duplicateFinder
	_ = f.find(jx.DecodeBytes(body))
	return f.dup
}

// hasDuplicate reports whether an object in the value d is at has a key twice. It is
// duplicateFinder without the path, which every request with a body pays for.
func hasDuplicate(d *jx.Decoder) bool {
	dup := false
	switch d.Next() {
	case jx.Object:
		seen := make(map[string]struct{})
		_ = d.ObjBytes(func(d *jx.Decoder, key []byte) error {
			if _, ok := seen[string(key)]; ok {
				dup = true
				return errStopWalk
			}
			seen[string(key)] = struct{}{}
			if hasDuplicate(d) {
				dup = true
				return errStopWalk
			}
			return nil
		})
	case jx.Array:
		_ = d.Arr(func(d *jx.Decoder) error {
			if hasDuplicate(d) {
				dup = true
				return errStopWalk
			}
			return nil
		})
	default:
		_ = d.Skip()
	}
	return dup
}

// errStopWalk ends a walk once its answer is known.
var errStopWalk = errors.New("stop")

// duplicateFinder walks a JSON document for a repeated key. It keeps the path to the value
// it is at as a stack of segments and spells it out for the duplicate.
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
			k := string(key)
			f.path = append(f.path, pathSegment{key: k, isKey: true})
			defer func() { f.path = f.path[:len(f.path)-1] }()
			if _, ok := seen[k]; ok && f.dup == "" {
				f.dup = f.spell()
			}
			seen[k] = struct{}{}
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
