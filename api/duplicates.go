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
	path, _ := duplicateIn(jx.DecodeBytes(body))
	return strings.TrimPrefix(path, ".")
}

// duplicateIn reports whether an object in the value d is at has a key twice, and the path
// of the first such key relative to that value, each key after a dot (".items[0].quantity").
// The walk keeps no path: the path is spelled only on the way back from a repeat, so every
// request with a body pays for the walk alone.
func duplicateIn(d *jx.Decoder) (path string, found bool) {
	switch d.Next() {
	case jx.Object:
		seen := make(map[string]struct{})
		_ = d.ObjBytes(func(d *jx.Decoder, key []byte) error {
			if _, ok := seen[string(key)]; ok {
				path, found = "."+string(key), true
				return errStopWalk
			}
			seen[string(key)] = struct{}{}
			if sub, ok := duplicateIn(d); ok {
				path, found = "."+string(key)+sub, true
				return errStopWalk
			}
			return nil
		})
	case jx.Array:
		i := 0
		_ = d.Arr(func(d *jx.Decoder) error {
			if sub, ok := duplicateIn(d); ok {
				path, found = jsonPathIndex("", i)+sub, true
				return errStopWalk
			}
			i++
			return nil
		})
	default:
		_ = d.Skip()
	}
	return path, found
}

// errStopWalk ends a walk once its answer is known.
var errStopWalk = errors.New("stop")

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
