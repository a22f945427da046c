package api

import (
	"strings"

	"github.com/go-faster/jx"

	"orderflow/api/oas"
)

// bodyFieldError names the field of a well-formed JSON body of the operation op (its
// operationId) that ogen's decoder refused (err): a value of a type the contract does not give
// the field, or a field the contract does not have. ok is false when body is not JSON, which
// is no field's fault, or the field cannot be told.
func bodyFieldError(op string, err error, body []byte) (f oas.FieldError, ok bool) {
	if !jx.Valid(body) {
		return f, false
	}
	leaf := leafError(err)
	trail := decodedFields(err, leaf)
	msg := leaf.Error()
	var key string
	if matches(msg, "unexpected field %q", &key) {
		path, ok := findInBody(body, trail, valueLocator{key: key, offset: -1})
		return oas.FieldError{Field: path, Message: "is not a field of this object"}, ok
	}
	if len(trail) == 0 {
		return f, false
	}
	offset := -1
	if i := strings.LastIndex(msg, " at "); i >= 0 {
		var n int
		if matches(msg[i:], " at %d", &n) {
			offset = n
		}
	}
	// The decoder says where a value of the wrong type starts, but not where an integer
	// that overflows is: that is the first one.
	outOfRange := strings.Contains(msg, "value out of range")
	path, ok := findInBody(body, trail, valueLocator{offset: offset, outOfRange: outOfRange})
	if !ok {
		return f, false
	}
	return oas.FieldError{Field: path, Message: typeMessage(err.Error(), op, path)}, true
}

// typeMessage says what is wrong with the value at path in a body of the operation op, which
// ogen's decoder refused with the error text msg: what the contract expects there, unless
// the decoder says more precisely.
func typeMessage(msg, op, path string) string {
	switch {
	case strings.Contains(msg, "floating point character"):
		return "must be an integer"
	case strings.Contains(msg, "value out of range"):
		return "is out of range"
	}
	// The decoder does not say what it expected: the contract does.
	if want := expectedType(op, path); want != "" {
		return want
	}
	return "has the wrong type"
}

// leafError returns the error at the end of err's chain, following the first error of a
// joined one.
func leafError(err error) error {
	for {
		var next error
		switch e := err.(type) {
		case interface{ Unwrap() error }:
			next = e.Unwrap()
		case interface{ Unwrap() []error }:
			if errs := e.Unwrap(); len(errs) > 0 {
				next = errs[0]
			}
		}
		if next == nil {
			return err
		}
		err = next
	}
}

// valueLocator tells which value of a body the decoder refused: the member key of an
// object, when key is set, or the first object without that member when lacking is also
// set; otherwise the value (or the element of an array value)
// that holds the byte at offset, or, with no offset (-1), the first integer too large for
// 64 bits when outOfRange is set, or else the one value that the fields lead to outside any
// array.
type valueLocator struct {
	key        string
	lacking    bool
	offset     int
	outOfRange bool
}

// findInBody returns the JSON path of the value of body that l locates, reached through the
// object members named by fields and the elements of any arrays between them.
func findInBody(body []byte, fields []string, l valueLocator) (string, bool) {
	return l.find(jx.DecodeBytes(body), body, "", fields, false)
}

func (l valueLocator) find(d *jx.Decoder, body []byte, path string, fields []string, inArray bool) (string, bool) {
	var (
		found string
		ok    bool
	)
	next := d.Next()
	if len(fields) == 0 && l.key == "" {
		raw, err := d.Raw()
		if err != nil {
			return "", false
		}
		start := cap(body) - cap(raw)
		switch {
		case l.offset < 0 && l.outOfRange:
			_, err := jx.DecodeBytes(raw).Int64()
			return path, next == jx.Number && err != nil
		case l.offset < 0:
			return path, !inArray
		case l.offset < start || l.offset >= start+len(raw):
			return "", false
		case next == jx.Array && l.offset > start:
			// The decoder refused an element of the array: the one holding the offset.
			i := 0
			_ = jx.DecodeBytes(raw).Arr(func(d *jx.Decoder) error {
				if !ok {
					found, ok = l.find(d, body, jsonPathIndex(path, i), nil, true)
				} else if err := d.Skip(); err != nil {
					return err
				}
				i++
				return nil
			})
			return found, ok
		}
		return path, true
	}
	switch next {
	case jx.Object:
		has := false
		_ = d.ObjBytes(func(d *jx.Decoder, key []byte) error {
			switch {
			case ok:
			case len(fields) == 0:
				has = has || string(key) == l.key
			case string(key) == fields[0]:
				found, ok = l.find(d, body, jsonPathKey(path, fields[0]), fields[1:], inArray)
				return nil
			}
			return d.Skip()
		})
		switch {
		case len(fields) > 0:
		case has == l.lacking:
			return "", false
		case l.lacking:
			return path, true
		default:
			return jsonPathKey(path, l.key), true
		}
	case jx.Array:
		i := 0
		_ = d.Arr(func(d *jx.Decoder) error {
			if ok {
				return d.Skip()
			}
			found, ok = l.find(d, body, jsonPathIndex(path, i), fields, true)
			i++
			return nil
		})
	default:
		_ = d.Skip()
	}
	return found, ok
}
