// Package api is orderflow's HTTP API: the handlers behind the ogen server generated from
// openapi.yaml into api/oas, bearer-token authentication, and the fx module that serves
// them, applies the migrations and keeps the configured admin account.
package api

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/configuration"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/platform/metrics"
)

var (
	_ oas.Handler         = (*Handler)(nil)
	_ oas.SecurityHandler = (*Handler)(nil)
)

// Handler implements every operation of the API and its bearer authentication.
type Handler struct {
	client     *ent.Client
	db         *sql.DB
	log        *slog.Logger
	tokens     *Tokens
	bcryptCost int
	now        func() time.Time

	// adminEmail is admin.email, normalized: only an admin account may hold it, since the
	// API's start-up updates the account with that address (EnsureAdmin).
	adminEmail string
	// adminName is admin.name, which the API's start-up stores likewise.
	adminName string

	stock     *stockLocks
	intake    *intake
	places    *places
	logins    *loginLimiter
	outages   *outageLog
	dummyOnce sync.Once
	dummy     []byte
}

// NewHandler returns the API's handler on the database behind client and db (the same
// pool), with tokens configured by cfg.Auth.
func NewHandler(client *ent.Client, db *sql.DB, cfg *configuration.Config, log *slog.Logger) *Handler {
	return &Handler{
		client:     client,
		db:         db,
		log:        log,
		tokens:     NewTokens(cfg.Auth.JWTSecret, cfg.Auth.Issuer, cfg.Auth.TokenTTL.D()),
		adminEmail: domain.NormalizeEmail(cfg.Admin.Email),
		adminName:  cfg.Admin.Name,
		bcryptCost: bcrypt.DefaultCost,
		stock:      newStockLocks(),
		intake:     newIntake(db, log, cfg.Orders.IntakeConnections, cfg.Orders.IntakeGroupSize),
		places:     newPlaces(cfg.HTTP.MaxRequestsInFlight, cfg.HTTP.RequestTimeout.D()/2),
		logins:     newLoginLimiter(cfg.Auth.LoginAttemptsPerMinute, cfg.Auth.LoginAttemptsPerAddressPerMinute, time.Now),
		outages:    newOutageLog(time.Now),
		now:        func() time.Time { return time.Now().UTC() },
	}
}

// Tokens returns the handler's token service.
func (h *Handler) Tokens() *Tokens { return h.tokens }

// NewServer returns the http.Handler serving the API's operations under /api/: ogen's
// router with problem+json answers for unknown routes and undecodable requests, request
// bodies limited to maxBodyBytes and refused when an object repeats a key,
// WWW-Authenticate on every 401, Retry-After on a 429 that sets it, HEAD answered as GET, and
// on every answer Cache-Control: no-store and X-Content-Type-Options: nosniff. An operation
// runs once its request has a place (places), or is answered 503 with Retry-After.
func NewServer(h *Handler, maxBodyBytes int64) (http.Handler, error) {
	srv, err := oas.NewServer(h, h,
		oas.WithErrorHandler(h.handleRequestError),
		oas.WithMiddleware(refuseUnknownQuery),
		oas.WithNotFound(func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, problemResponse(http.StatusNotFound, "No operation is served at "+r.URL.Path+".", nil))
		}),
		oas.WithMethodNotAllowed(func(w http.ResponseWriter, r *http.Request, allowed string) {
			if slices.Contains(strings.Split(allowed, ","), http.MethodGet) {
				allowed += "," + http.MethodHead
			}
			w.Header().Set("Allow", allowed)
			writeProblem(w, problemResponse(http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+".", nil))
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("new api server: %w", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer is for one caller (a token, a user's orders) or about one request:
		// no cache may keep it, and no browser may read it as another type than it names,
		// as some repeat what the request held.
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		r, info := withRequestInfo(r)
		if r.Method == http.MethodHead {
			// Answered as GET where GET is served (RFC 9110, section 9.3.2): the server,
			// which keeps the request it read, drops the body written to a HEAD's answer.
			if _, get := srv.FindPath(http.MethodGet, r.URL); get {
				r = r.Clone(r.Context())
				r.Method = http.MethodGet
			}
		}
		route, operation := srv.FindPath(r.Method, r.URL)
		order := operation && route.Name() == string(oas.CreateOrderOperation)
		if operation {
			// Metrics and spans name the operation, not the /api/ prefix.
			metrics.SetRoute(r.Context(), route.OperationID())
			if order {
				defer countOrderRefused(info)
			}
		} else {
			// No operation: counted as the mux counts a path it serves nothing at.
			metrics.SetRoute(r.Context(), metrics.Unmatched)
		}
		body, refused := readBody(w, r, maxBodyBytes)
		if refused != nil {
			writeProblem(w, refused)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		info.body = body
		// A list header sent on several lines is one list (RFC 9110, section 5.3); the
		// generated decoder reads only the first line.
		if r.Method == http.MethodPut && len(r.Header.Values("If-Match")) > 1 {
			r.Header.Set("If-Match", strings.Join(r.Header.Values("If-Match"), ", "))
		}
		if operation {
			if !h.places.take(r.Context()) {
				if order {
					info.orderCounted = true
					ordersCreated.WithLabelValues("unavailable").Inc()
				}
				w.Header().Set("Retry-After", "1")
				writeProblem(w, problemResponse(http.StatusServiceUnavailable,
					"The server is working on as many requests as it takes at once (http.maxRequestsInFlight), and none left it a place for this one in time; nothing was done: retry later.", nil))
				return
			}
			defer h.places.release()
		}
		srv.ServeHTTP(&challengeWriter{ResponseWriter: w, info: info}, r)
	}), nil
}

// readBody reads r's body, of at most maxBodyBytes, or returns the answer that refuses it:
// 413 for a larger one, 400 for one that could not be read, 415 for one in a charset other
// than UTF-8, and 400 for one that holds half of a surrogate pair or an object that repeats
// a key, which the generated decoder would take without a word.
func readBody(w http.ResponseWriter, r *http.Request, maxBodyBytes int64) ([]byte, *oas.ErrorStatusCode) {
	tooLarge := func() *oas.ErrorStatusCode {
		return problemResponse(http.StatusRequestEntityTooLarge, fmt.Sprintf("The request body is larger than %d bytes.", maxBodyBytes), nil)
	}
	if r.ContentLength > maxBodyBytes {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return nil, tooLarge()
	case err != nil:
		return nil, problemResponse(http.StatusBadRequest, "The request body could not be read.", nil)
	}
	if charset := otherCharset(r.Header.Get("Content-Type")); charset != "" && len(body) > 0 {
		return nil, problemResponse(http.StatusUnsupportedMediaType,
			"The request body must be application/json in UTF-8, not in charset "+charset+".", nil)
	}
	if at := loneSurrogate(body); at >= 0 {
		return nil, problemResponse(http.StatusBadRequest, fmt.Sprintf(
			"The request body holds half of a UTF-16 surrogate pair (the \\u escape at byte %d) without its other half: text must be valid Unicode.", at), nil)
	}
	if key := duplicateKey(body); key != "" {
		return nil, problemResponse(http.StatusBadRequest, invalidRequest,
			[]oas.FieldError{{Field: key, Message: "appears more than once in one object"}})
	}
	return body, nil
}

// otherCharset returns the charset that contentType names when it is not UTF-8 or a part of
// it. JSON exchanged between systems is UTF-8 (RFC 8259): a body in Latin-1 or UTF-16 read as
// UTF-8 would store other text than the client meant, or fail to decode with a misleading
// 400. "utf8" is a common label of UTF-8, and US-ASCII text is UTF-8 as it is.
func otherCharset(contentType string) string {
	if strings.IndexByte(contentType, ';') < 0 { // no parameters, as nearly every request
		return ""
	}
	_, params, err := mime.ParseMediaType(contentType)
	charset, ok := params["charset"]
	if err != nil || !ok {
		return ""
	}
	for _, utf8 := range []string{"utf-8", "utf8", "us-ascii"} {
		if strings.EqualFold(charset, utf8) {
			return ""
		}
	}
	return charset
}

// challengeWriter adds the bearer challenge to 401 answers, and Retry-After to 429 answers
// when the handler set it.
type challengeWriter struct {
	http.ResponseWriter
	info *requestInfo
}

// WriteHeader implements http.ResponseWriter.
func (w *challengeWriter) WriteHeader(code int) {
	switch {
	case code == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="orderflow"`)
	case code == http.StatusTooManyRequests && w.info.retryAfter != "":
		w.Header().Set("Retry-After", w.info.retryAfter)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *challengeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
