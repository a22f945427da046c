package api

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
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ogen-go/ogen/ogenerrors"
	"github.com/ogen-go/ogen/openapi"
	"github.com/ogen-go/ogen/validate"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/platform/db"
)

// Problem is an error that answers with a specific status and RFC 9457 body. Handlers
// return it (wrapped or not) for outcomes that are the caller's to fix.
type Problem struct {
	Status int
	Detail string
	Fields []oas.FieldError
}

// Error implements error.
func (p *Problem) Error() string { return fmt.Sprintf("%d %s", p.Status, p.Detail) }

func problem(status int, detail string) *Problem { return &Problem{Status: status, Detail: detail} }

func invalid(field, message string) *Problem {
	return invalidFields([]oas.FieldError{{Field: field, Message: message}})
}

// invalidRequest is the detail of every 400 that names the fields at fault.
const invalidRequest = "The request is invalid."

// invalidFields is the 400 naming every field in fields.
func invalidFields(fields []oas.FieldError) *Problem {
	return &Problem{Status: http.StatusBadRequest, Detail: invalidRequest, Fields: fields}
}

// fieldChecks collects the field errors of one request, so that the answer names every
// field at fault at once instead of one per attempt.
type fieldChecks []oas.FieldError

// check records err, if any, as field's error.
func (c *fieldChecks) check(field string, err error) {
	if err != nil {
		*c = append(*c, oas.FieldError{Field: field, Message: err.Error()})
	}
}

// err returns the 400 naming every field recorded, or nil when there is none.
func (c fieldChecks) err() error {
	if len(c) == 0 {
		return nil
	}
	return invalidFields(c)
}

// notFound is the answer for the resource of the given kind ("Order") and id that does
// not exist, or that the caller may not see: the same answer, so that it tells nothing of
// other users' resources.
func notFound(kind string, id int) *Problem {
	return problem(http.StatusNotFound, fmt.Sprintf("%s %d does not exist.", kind, id))
}

// orNotFound returns notFound(kind, id) when err says that the resource does not exist,
// and err otherwise.
func orNotFound(err error, kind string, id int) error {
	if ent.IsNotFound(err) {
		return notFound(kind, id)
	}
	return err
}

var (
	errForbidden    = problem(http.StatusForbidden, "This action is not allowed to you.")
	errUnauthorized = problem(http.StatusUnauthorized, "A valid bearer token is required.")
)

// unconfirmedCreate is the error of a statement that creates a resource and reached PostgreSQL
// without an answer coming back (unconfirmed): the resource may have been created. Its
// request is not told to try again as if nothing had happened, which would create a second
// product, or be refused as if the address were another user's.
type unconfirmedCreate struct {
	what string // "product", listed by GET /api/products
	err  error
}

func (u *unconfirmedCreate) Error() string {
	return fmt.Sprintf("create %s: outcome unknown: %v", u.what, u.err)
}

func (u *unconfirmedCreate) Unwrap() error { return u.err }

// detail is the answer's: what the client should do.
func (u *unconfirmedCreate) detail() string {
	return fmt.Sprintf("The database did not confirm in time whether the %s was created, and it may have been. Look for it (GET /api/%ss) before creating it again.", u.what, u.what)
}

// createError returns the error of a statement that creates a what ("product"), failed with
// err: unconfirmedCreate when the statement may have run (unconfirmed).
func createError(what string, err error) error {
	if unconfirmed(err) {
		return &unconfirmedCreate{what: what, err: err}
	}
	return fmt.Errorf("create %s: %w", what, err)
}

// unconfirmed tells whether err, of a statement run without a transaction of the caller's,
// came after the statement was sent and before its answer: the time ran out while it ran
// (pgx's timeout), or the connection broke. One that came before it was sent (db.NotSent),
// or that PostgreSQL answered, changed nothing.
func unconfirmed(err error) bool {
	return !db.NotSent(err) && (pgconn.Timeout(err) || db.Unavailable(err))
}

// detailOrderMayBeStored answers an order whose outcome is unknown (errOutcomeUnknown).
const detailOrderMayBeStored = "The database did not confirm in time whether the order was stored, and it may have been. " +
	"Look for it (GET /api/orders) before placing it again. An order sent with an Idempotency-Key can be retried with the same key instead, which never stores it twice."

// ErrInsufficientStock is returned when a product has fewer units than an order asks for.
var ErrInsufficientStock = errors.New("insufficient stock")

// ErrIdempotencyKeyReused is returned when an Idempotency-Key comes back with another request.
var ErrIdempotencyKeyReused = errors.New("idempotency key was used with a different request")

// ErrIdempotencyKeyOrderDeleted is returned when an Idempotency-Key comes back after the order
// that its first request placed was deleted: placing it again would not be a retry.
var ErrIdempotencyKeyOrderDeleted = errors.New("the order placed with this idempotency key was deleted")

// NewError turns any error that a handler or the security handler returned into a problem
// response. Unknown errors are logged and become 500 without detail.
func (h *Handler) NewError(ctx context.Context, err error) *oas.ErrorStatusCode {
	var (
		p    *Problem
		secE *ogenerrors.SecurityError
		uc   *unconfirmedCreate
	)
	switch {
	case errors.Is(err, errOutcomeUnknown):
		h.outages.warn(ctx, h.log, "order outcome unknown: requests answered 503", err)
		return problemResponse(http.StatusServiceUnavailable, detailOrderMayBeStored, nil)
	case errors.As(err, &uc):
		h.outages.warn(ctx, h.log, "creation outcome unknown: requests answered 503", err)
		return problemResponse(http.StatusServiceUnavailable, uc.detail(), nil)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		h.outages.warn(ctx, h.log, "requests ran out of time: answered 503", err)
		return problemResponse(http.StatusServiceUnavailable, "The request took too long; try again later.", nil)
	case db.Unavailable(err):
		h.outages.warn(ctx, h.log, "database unavailable: requests answered 503", err)
		return problemResponse(http.StatusServiceUnavailable, "The database is unavailable; try again later.", nil)
	case errors.As(err, &p):
		return problemResponse(p.Status, p.Detail, p.Fields)
	case errors.As(err, &secE) && errors.Is(secE.Err, ogenerrors.ErrSecurityRequirementIsNotSatisfied):
		// No token. A bad one is errUnauthorized, above; any other error of the security
		// handler is the server's (its user could not be read), a 500 below.
		return problemResponse(errUnauthorized.Status, errUnauthorized.Detail, nil)
	case errors.Is(err, domain.ErrTransitionNotAllowed):
		return problemResponse(http.StatusConflict, capitalize(err.Error())+".", nil)
	case errors.Is(err, domain.ErrUnknownStatus):
		return problemResponse(http.StatusBadRequest, invalidRequest,
			[]oas.FieldError{{Field: "status", Message: err.Error()}})
	case errors.Is(err, ErrInsufficientStock):
		return problemResponse(http.StatusConflict, capitalize(err.Error())+".", nil)
	case errors.Is(err, ErrIdempotencyKeyReused):
		return problemResponse(http.StatusUnprocessableEntity, "The Idempotency-Key was already used with a different request.", nil)
	case errors.Is(err, ErrIdempotencyKeyOrderDeleted):
		return problemResponse(http.StatusConflict, "The order placed with this Idempotency-Key was deleted; send a new key to place it again.", nil)
	case ent.IsNotFound(err):
		return problemResponse(http.StatusNotFound, "The resource does not exist.", nil)
	}
	h.log.ErrorContext(ctx, "request failed", "error", err)
	return problemResponse(http.StatusInternalServerError, "An unexpected error occurred.", nil)
}

func problemResponse(status int, detail string, fields []oas.FieldError) *oas.ErrorStatusCode {
	p := oas.Problem{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Errors: fields,
	}
	if detail != "" {
		p.Detail = oas.NewOptString(detail)
	}
	return &oas.ErrorStatusCode{StatusCode: status, Response: p}
}

// writeProblem writes e as application/problem+json, for errors that never reach NewError.
func writeProblem(w http.ResponseWriter, e *oas.ErrorStatusCode) {
	enc := jx.GetEncoder()
	defer jx.PutEncoder(enc)
	e.Response.Encode(enc)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(e.StatusCode)
	_, _ = w.Write(enc.Bytes())
}

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

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
