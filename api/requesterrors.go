package api

// The answers to requests that ogen could not decode or validate. ogen names what failed
// partly in words of its own ("decode field", "value 0 less than 1"), which are read here as
// the version in go.mod writes them; the contract tests (bodychecks_test.go, contract_test.go)
// send every such request and fail when an upgrade changes the words.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-faster/jx"
	"github.com/ogen-go/ogen/ogenerrors"
	"github.com/ogen-go/ogen/openapi"
	"github.com/ogen-go/ogen/validate"

	"orderflow/api/oas"
)

// handleRequestError answers requests that ogen could not decode or validate: 400 with one
// entry per bad field where it can name them (for a body that breaks the contract, those
// that its operation's bodyChecks find too), 400 saying where a body that is not JSON
// breaks, 413 for a body over the size limit, 415 for a body whose media type is not JSON
// (400 for none, or only whitespace, whatever media type it names), 404 for a path without
// its id, the security handler's answer (401, 403) for a request it refused, and ogen's own
// code for anything else.
func (h *Handler) handleRequestError(ctx context.Context, w http.ResponseWriter, r *http.Request, err error) {
	var (
		maxErr   *http.MaxBytesError
		paramErr *ogenerrors.DecodeParamError
		bodyErr  *ogenerrors.DecodeBodyError
		valErr   *validate.Error
		secErr   *ogenerrors.SecurityError
	)
	switch {
	case errors.As(err, &maxErr):
		writeProblem(w, problemResponse(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("The request body is larger than %d bytes.", maxErr.Limit), nil))
		return
	case errors.As(err, &secErr):
		writeProblem(w, h.NewError(ctx, err))
		return
	case errors.Is(err, validate.ErrBodyRequired):
		writeProblem(w, problemResponse(http.StatusBadRequest, "A request body is required.", nil))
		return
	case errors.As(err, &paramErr) && paramErr.In == openapi.LocationPath && errors.Is(paramErr.Err, validate.ErrFieldRequired):
		// A path that ends where its id should be ("/api/orders/") names no resource.
		writeProblem(w, problemResponse(http.StatusNotFound, "The resource does not exist.", nil))
		return
	case errors.As(err, &paramErr):
		writeProblem(w, problemResponse(http.StatusBadRequest, invalidRequest,
			[]oas.FieldError{{Field: paramErr.Name, Message: paramMessage(paramErr.Name, paramErr.Err)}}))
		return
	case errors.As(err, &valErr):
		body := requestInfoFrom(ctx).body
		fields := fieldErrors(decodedObjectPath(err, valErr, body), valErr, nil)
		// The handler, which never runs, would name more: its checks are run here too, so
		// that one answer names every field at fault.
		fields = withBodyChecks(operationID(err), body, fields)
		writeProblem(w, problemResponse(http.StatusBadRequest, invalidRequest, fields))
		return
	case errors.As(err, &bodyErr):
		body := requestInfoFrom(ctx).body
		if blank(body) {
			writeProblem(w, problemResponse(http.StatusBadRequest, "A request body is required.", nil))
			return
		}
		if msg := syntaxError(body); msg != "" {
			writeProblem(w, problemResponse(http.StatusBadRequest, "The request body is not valid JSON: "+msg+".", nil))
			return
		}
		if jx.DecodeBytes(body).Next() != jx.Object {
			// Every operation takes an object; null is what a client that serialized
			// nothing sends.
			writeProblem(w, problemResponse(http.StatusBadRequest, "The request body must be a JSON object.", nil))
			return
		}
		if f, ok := bodyFieldError(operationID(err), bodyErr.Err, body); ok {
			writeProblem(w, problemResponse(http.StatusBadRequest, invalidRequest, []oas.FieldError{f}))
			return
		}
		writeProblem(w, problemResponse(http.StatusBadRequest, "The request body is not valid JSON for this operation: "+bodyErr.Err.Error()+".", nil))
		return
	}
	var (
		ctErr  *validate.InvalidContentTypeError
		reqErr *ogenerrors.DecodeRequestError
	)
	// A body without a media type, or with one that does not parse, fails before ogen
	// compares it with application/json.
	if errors.As(err, &ctErr) || (errors.As(err, &reqErr) && !parsesAsMediaType(r.Header.Get("Content-Type"))) {
		if blank(requestInfoFrom(ctx).body) {
			// Nothing was sent, so no media type was wrong: the body is what is missing.
			writeProblem(w, problemResponse(http.StatusBadRequest, "A request body is required.", nil))
			return
		}
		writeProblem(w, problemResponse(http.StatusUnsupportedMediaType, "The request body must be application/json.", nil))
		return
	}
	code := ogenerrors.ErrorCode(err)
	if code >= 500 {
		h.log.ErrorContext(ctx, "request failed", "error", err)
		writeProblem(w, problemResponse(code, "An unexpected error occurred.", nil))
		return
	}
	writeProblem(w, problemResponse(code, "The request is invalid: "+err.Error()+".", nil))
}

// operationID returns the operationId of the operation whose request ogen refused with err,
// or "" when err does not say.
func operationID(err error) string {
	var opErr ogenerrors.Error
	if errors.As(err, &opErr) {
		return opErr.OperationID()
	}
	return ""
}

// syntaxError tells where body stops being JSON, in encoding/json's words and with the
// position of the byte it stopped at (counted from 1), or returns "" when body is JSON.
func syntaxError(body []byte) string {
	var (
		v  any
		se *json.SyntaxError
	)
	if err := json.Unmarshal(body, &v); errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	return ""
}

// blank reports whether a request body holds nothing but whitespace, as a client that sent
// no body, or an empty line, does.
func blank(body []byte) bool { return len(bytes.TrimSpace(body)) == 0 }

func parsesAsMediaType(v string) bool {
	_, _, err := mime.ParseMediaType(v)
	return err == nil
}

func paramMessage(name string, err error) string {
	var valErr *validate.Error
	if errors.As(err, &valErr) && len(valErr.Fields) > 0 {
		return fieldMessage(name, valErr.Fields[0].Error)
	}
	return fieldMessage(name, err)
}

// fieldErrors flattens ogen's nested validation errors into one entry per invalid field,
// named by its JSON path ("items[0].quantity").
func fieldErrors(prefix string, e *validate.Error, out []oas.FieldError) []oas.FieldError {
	for _, f := range e.Fields {
		name := f.Name
		if prefix != "" && !strings.HasPrefix(name, "[") {
			name = "." + name
		}
		name = prefix + name
		var nested *validate.Error
		if errors.As(f.Error, &nested) {
			out = fieldErrors(name, nested, out)
			continue
		}
		out = append(out, oas.FieldError{Field: name, Message: fieldMessage(f.Name, f.Error)})
	}
	return out
}

// decodedObjectPath returns the JSON path in body of the object whose required fields
// ogen's decoder found missing (valErr, inside err), or "" for the body itself. The decoder
// names the fields it was inside (`decode field "items"`) but not the index of an array's
// element, so the path is followed in body, taking in each array the first element that
// lacks the field: the decoder stops at the first element that fails.
func decodedObjectPath(err error, valErr *validate.Error, body []byte) string {
	fields := decodedFields(err, valErr)
	if len(fields) == 0 || len(valErr.Fields) == 0 {
		return ""
	}
	path, ok := findInBody(body, fields, valueLocator{key: valErr.Fields[0].Name, lacking: true, offset: -1})
	if !ok {
		return ""
	}
	return path
}

// decodedFields returns the names of the `decode field "x"` wrappers around inner in err's
// tree, outermost first, or nil when err does not hold inner.
func decodedFields(err, inner error) []string {
	if err == nil {
		return nil
	}
	if err == inner {
		return []string{}
	}
	var next []error
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		next = []error{e.Unwrap()}
	case interface{ Unwrap() []error }:
		next = e.Unwrap()
	}
	for _, n := range next {
		fields := decodedFields(n, inner)
		if fields == nil {
			continue
		}
		var name string
		if n != nil && matches(strings.TrimSuffix(err.Error(), ": "+n.Error()), "decode field %q", &name) {
			fields = append([]string{name}, fields...)
		}
		return fields
	}
	return nil
}

// givenTwice is the message for a parameter sent more than once.
const givenTwice = "must be given only once"

// enumValues lists the values of the contract's enumerations by the name of the fields and
// parameters that take them, for the answer to any other value.
var enumValues = map[string][]string{
	"status": enumStrings(oas.OrderStatus("").AllValues()),
	"role":   enumStrings(oas.Role("").AllValues()),
}

// mustBeOneOf is the answer to a value outside an enumeration of values.
func mustBeOneOf(values []string) string { return "must be one of " + strings.Join(values, ", ") }

func enumStrings[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

// fieldMessage turns one of ogen's validation errors about the field or parameter name
// into a short message.
func fieldMessage(name string, err error) string {
	var (
		minErr *validate.MinLengthError
		maxErr *validate.MaxLengthError
		numErr *strconv.NumError
	)
	unit := "characters"
	if strings.HasPrefix(err.Error(), "array") {
		unit = "items"
	}
	switch {
	case errors.Is(err, validate.ErrFieldRequired):
		return "is required"
	case strings.HasSuffix(err.Error(), "multiple values"):
		// ogen's words for a query parameter sent more than once.
		return givenTwice
	case errors.As(err, &minErr) && minErr.MinLength == 1:
		// As domain.ValidateLength says it, not "at least 1 characters".
		return "must not be empty"
	case errors.As(err, &minErr):
		return fmt.Sprintf("must have at least %d %s", minErr.MinLength, unit)
	case errors.As(err, &maxErr):
		return fmt.Sprintf("must have at most %d %s", maxErr.MaxLength, unit)
	// A parameter that does not parse as a number: said without the Go function that parsed it.
	case errors.As(err, &numErr) && errors.Is(numErr.Err, strconv.ErrRange):
		return "is out of range"
	case errors.As(err, &numErr):
		return "must be an integer"
	}
	// ogen says these in words of its own ("int: value 0 less than 1", "invalid value: x"),
	// without a type of their own: said as the contract's rule instead.
	var value, bound int64
	inner := innermost(err).Error()
	switch values, ok := enumValues[name]; {
	case ok && strings.HasPrefix(inner, "invalid value: "):
		return mustBeOneOf(values)
	case matches(inner, "value %d less than %d", &value, &bound):
		return fmt.Sprintf("must be at least %d", bound)
	case matches(inner, "value %d greater than %d", &value, &bound):
		return fmt.Sprintf("must be at most %d", bound)
	}
	return err.Error()
}

// innermost returns the last error of err's chain.
func innermost(err error) error {
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(err) {
		err = next
	}
	return err
}

// matches reports whether s has the form of format, scanning its verbs into args.
func matches(s, format string, args ...any) bool {
	n, err := fmt.Sscanf(s, format, args...)
	return err == nil && n == len(args)
}
