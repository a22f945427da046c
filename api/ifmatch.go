package api

import (
	"errors"
	"slices"
	"strings"
)

// entityTags are the entity tags of an If-Match header (RFC 9110, section 13.1.1).
type entityTags struct {
	any    bool     // "*": any current version
	strong []string // the strong tags, quotes included
	weak   []string // the weak tags, quotes included and W/ left out: they never match
}

// matches tells whether current, a strong tag with its quotes, satisfies the header.
func (t entityTags) matches(current string) bool {
	return t.any || slices.Contains(t.strong, current)
}

var errIfMatch = errors.New(`must be * or entity tags in double quotes, separated by commas, as the ETag header gives them`)

// parseIfMatch parses the value of an If-Match header: "*", or a list of entity tags.
func parseIfMatch(v string) (entityTags, error) {
	v = strings.Trim(v, " \t")
	if v == "*" {
		return entityTags{any: true}, nil
	}
	var (
		tags entityTags
		n    int // tags read, weak ones included
	)
	for {
		v = strings.TrimLeft(v, " \t,")
		if v == "" {
			break
		}
		weak := strings.HasPrefix(v, "W/")
		if weak {
			v = v[2:]
		}
		if !strings.HasPrefix(v, `"`) {
			return entityTags{}, errIfMatch
		}
		end := strings.IndexByte(v[1:], '"')
		if end < 0 {
			return entityTags{}, errIfMatch
		}
		tag := v[:end+2]
		n++
		if weak {
			tags.weak = append(tags.weak, tag)
		} else {
			tags.strong = append(tags.strong, tag)
		}
		v = v[end+2:]
		if rest := strings.TrimLeft(v, " \t"); rest != "" && rest[0] != ',' {
			return entityTags{}, errIfMatch
		}
	}
	if n == 0 {
		return entityTags{}, errIfMatch
	}
	return tags, nil
}
