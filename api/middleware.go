package api

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ogen-go/ogen/middleware"
	"github.com/ogen-go/ogen/openapi"

	"orderflow/api/oas"
)

// refuseUnknownQuery refuses a request whose query names a parameter that its operation
// does not take, as an unknown body field is refused: ignored, a misspelled filter
// (user_id for userId) would answer with the unfiltered list as if it were the filtered one.
// A query that does not parse whole is refused too: the decoders skip the pairs they cannot
// parse (a ";", a bad escape, parameters past net/url's limit), and a filter would be lost
// the same way. It runs after the security handler and the decoding of the known parameters
// and the body.
func refuseUnknownQuery(req middleware.Request, next middleware.Next) (middleware.Response, error) {
	if req.Raw.URL.RawQuery == "" { // most requests, order intake among them: nothing to parse
		return next(req)
	}
	query, err := url.ParseQuery(req.Raw.URL.RawQuery)
	if err != nil {
		return middleware.Response{}, problem(http.StatusBadRequest,
			"The query string is malformed ("+err.Error()+"): separate parameters with &, and escape % as %25 and ; as %3B.")
	}
	var takes, unknown []string
	for k := range req.Params {
		if k.In == openapi.LocationQuery {
			takes = append(takes, k.Name)
		}
	}
	for name := range query {
		if !slices.Contains(takes, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return next(req)
	}
	slices.Sort(takes)
	slices.Sort(unknown)
	msg := "is not a parameter of this operation, which takes " + listWords(takes)
	fields := make([]oas.FieldError, len(unknown))
	for i, name := range unknown {
		fields[i] = oas.FieldError{Field: name, Message: msg}
	}
	return middleware.Response{}, invalidFields(fields)
}

// listWords lists words as a sentence does: "a", "a and b", "a, b and c"; "none" for none.
func listWords(words []string) string {
	switch n := len(words); n {
	case 0:
		return "none"
	case 1:
		return words[0]
	default:
		return strings.Join(words[:n-1], ", ") + " and " + words[n-1]
	}
}
