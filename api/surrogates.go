package api

import (
	"bytes"
	"strconv"
)

// loneSurrogate returns the offset in body of a \u escape that is half of a UTF-16
// surrogate pair without its other half, or -1. The JSON decoder would read it as U+FFFD and
// store other text than the client sent, where raw bytes that are not UTF-8 are refused.
// Outside strings a backslash is a syntax error, which the decoder reports, so every
// backslash is taken as an escape.
func loneSurrogate(body []byte) int {
	for i := bytes.IndexByte(body, '\\'); i >= 0; {
		if i+1 >= len(body) {
			return -1
		}
		step := 2
		if body[i+1] == 'u' {
			switch r := escapedUnit(body, i); {
			case r >= 0xDC00 && r <= 0xDFFF: // a low half first
				return i
			case r >= 0xD800 && r <= 0xDBFF: // a high half: a low one must follow
				if low := escapedUnit(body, i+6); low < 0xDC00 || low > 0xDFFF {
					return i
				}
				step = 12
			default:
				step = 6
			}
		}
		next := bytes.IndexByte(body[min(i+step, len(body)):], '\\')
		if next < 0 {
			return -1
		}
		i += step + next
	}
	return -1
}

// escapedUnit returns the UTF-16 code unit of the \uXXXX escape at body[i:], or -1.
func escapedUnit(body []byte, i int) int {
	if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
		return -1
	}
	n, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 16)
	if err != nil {
		return -1
	}
	return int(n)
}
