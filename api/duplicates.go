package api

import (
	"github.com/go-faster/jx"
)

// duplicateKey returns the first object key that appears twice in one object of the JSON
// document body (at any depth), or "" if there is none or body is not JSON (which the
// operation's decoder then refuses). JSON parsers disagree about which of two equal keys
// counts, so a body with one is refused rather than read one way here and another way by a
// proxy or log in front of the API.
func duplicateKey(body []byte) string {
	dup, _ := findDuplicate(jx.DecodeBytes(body))
	return dup
}

func findDuplicate(d *jx.Decoder) (string, error) {
	var dup string
	switch d.Next() {
	case jx.Object:
		seen := make(map[string]struct{})
		err := d.ObjBytes(func(d *jx.Decoder, key []byte) error {
			if _, ok := seen[string(key)]; ok && dup == "" {
				dup = string(key)
			}
			seen[string(key)] = struct{}{}
			inner, err := findDuplicate(d)
			if dup == "" {
				dup = inner
			}
			return err
		})
		return dup, err
	case jx.Array:
		err := d.Arr(func(d *jx.Decoder) error {
			inner, err := findDuplicate(d)
			if dup == "" {
				dup = inner
			}
			return err
		})
		return dup, err
	default:
		return "", d.Skip()
	}
}
