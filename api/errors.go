package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-faster/jx"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ogen-go/ogen/ogenerrors"

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

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
