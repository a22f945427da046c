package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/ent/user"
)

// Principal is the signed-in user on whose behalf a request runs.
type Principal struct {
	ID    int
	Name  string
	Email string
	Role  string
	// tokenVersion is the version of the user's password, the token's.
	tokenVersion int
}

// IsAdmin reports whether p has the admin role.
func (p Principal) IsAdmin() bool { return p.Role == domain.RoleAdmin }

type principalKey struct{}

// caller is the signed-in user of a request. HandleBearerAuth stores the verified token's
// user id and version, and reads the user's row at once for every operation but
// CreateOrder, whose own statement reads it too (OrderStatement): one round trip for both.
type caller struct {
	id      int
	version int
	load    func(ctx context.Context) (Principal, error)
	once    sync.Once
	p       Principal
	err     error
}

// principalFrom returns the caller that HandleBearerAuth put into ctx, reading its user
// if that has not been done yet.
func principalFrom(ctx context.Context) (Principal, error) {
	c, ok := ctx.Value(principalKey{}).(*caller)
	if !ok {
		return Principal{}, errUnauthorized
	}
	c.once.Do(func() { c.p, c.err = c.load(ctx) })
	return c.p, c.err
}

// callerToken returns the user id and the version of the caller's verified token, without
// reading the user.
func callerToken(ctx context.Context) (id, version int, err error) {
	c, ok := ctx.Value(principalKey{}).(*caller)
	if !ok {
		return 0, 0, errUnauthorized
	}
	return c.id, c.version, nil
}

// errTokenUserGone refuses the token of a user that no longer exists.
var errTokenUserGone = fmt.Errorf("%w (the token's user no longer exists)", errUnauthorized)

// errTokenExpired refuses a token of this API whose time is up.
var errTokenExpired = problem(http.StatusUnauthorized, "The token has expired; log in again.")

// errTokenPasswordChanged refuses a token issued before its user's password was changed:
// its version is not the user's token_version.
var errTokenPasswordChanged = problem(http.StatusUnauthorized,
	"The token was issued before the user's password was changed; log in again.")

// claims are the contents of an orderflow token.
type claims struct {
	Role string `json:"role"`
	// Version is the user's token_version when the token was issued. Tokens issued before
	// it was written lack it, and count as version 0.
	Version int `json:"ver"`
	jwt.RegisteredClaims
}

// Tokens issues and verifies HS256 JWTs.
type Tokens struct {
	secret []byte
	issuer string
	ttl    time.Duration
	parser *jwt.Parser

	// verified remembers tokens whose signature and claims were checked, until they
	// expire, so that a client's every request does not pay for HMAC and JSON again.
	mu       sync.RWMutex
	verified map[string]verifiedToken
}

// verifiedToken is what a checked token says.
type verifiedToken struct {
	userID  int
	version int
	expires time.Time
}

// maxVerified bounds the verified-token cache; it is emptied when full.
const maxVerified = 10_000

// NewTokens returns a token service signing with secret, naming issuer, valid for ttl.
func NewTokens(secret, issuer string, ttl time.Duration) *Tokens {
	return &Tokens{
		secret:   []byte(secret),
		issuer:   issuer,
		ttl:      ttl,
		verified: make(map[string]verifiedToken),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(issuer),
			jwt.WithExpirationRequired(),
			// The time a token was issued is not checked: another API process may have
			// issued it by a clock a little ahead of this one's, and a token that had not
			// been issued yet could only come from a holder of the key.
		),
	}
}

// Issue returns a signed token for the user at the given token version, and its expiry.
func (t *Tokens) Issue(userID, version int, role string, now time.Time) (string, time.Time, error) {
	exp := now.Add(t.ttl).Truncate(time.Second)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{
		Role:    role,
		Version: version,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.Itoa(userID),
			Issuer:    t.issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	})
	s, err := tok.SignedString(t.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// Verify checks a token's algorithm, signature, issuer and expiry and returns its user id
// and version. Whether the version is still the user's is for the caller to check.
func (t *Tokens) Verify(token string) (userID, version int, err error) {
	t.mu.RLock()
	v, ok := t.verified[token]
	t.mu.RUnlock()
	if ok && time.Now().Before(v.expires) {
		return v.userID, v.version, nil
	}
	var c claims
	if _, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.secret, nil }); err != nil {
		return 0, 0, fmt.Errorf("verify token: %w", err)
	}
	id, err := strconv.Atoi(c.Subject)
	if err != nil || id <= 0 {
		return 0, 0, fmt.Errorf("verify token: bad subject %q", c.Subject)
	}
	t.mu.Lock()
	if len(t.verified) >= maxVerified {
		clear(t.verified)
	}
	t.verified[token] = verifiedToken{userID: id, version: c.Version, expires: c.ExpiresAt.Time}
	t.mu.Unlock()
	return id, c.Version, nil
}

// adminOperations are the operations only an admin may call. HandleBearerAuth refuses them to
// anyone else before ogen decodes the request, so that a customer gets 403 whatever its body
// or parameters hold, rather than being told first what is wrong with them; each handler
// checks the role again.
var adminOperations = map[oas.OperationName]bool{
	oas.ListUsersOperation:         true,
	oas.CreateUserOperation:        true,
	oas.DeleteUserOperation:        true,
	oas.CreateProductOperation:     true,
	oas.UpdateProductOperation:     true,
	oas.DeleteProductOperation:     true,
	oas.UpdateOrderStatusOperation: true,
	oas.DeleteOrderOperation:       true,
}

// HandleBearerAuth verifies the bearer token and reads its user, so that the token of a
// deleted user, or one issued before the user's password was changed, stops working at once
// and a changed role applies at once, and refuses the admin operations to other users.
// CreateOrder reads the user with its own statement instead (OrderStatement).
func (h *Handler) HandleBearerAuth(ctx context.Context, op oas.OperationName, t oas.BearerAuth) (context.Context, error) {
	id, version, err := h.tokens.Verify(t.Token)
	if errors.Is(err, jwt.ErrTokenExpired) {
		// Only a token with this API's signature gets here: its signature is checked first.
		return ctx, fmt.Errorf("%w: %w", errTokenExpired, err)
	}
	if err != nil {
		return ctx, fmt.Errorf("%w: %w", errUnauthorized, err)
	}
	c := &caller{id: id, version: version, load: func(ctx context.Context) (Principal, error) {
		p := Principal{ID: id, tokenVersion: version}
		var current int
		err := h.db.QueryRowContext(ctx, `SELECT name, email, role, token_version FROM users WHERE id = $1`, id).
			Scan(&p.Name, &p.Email, &p.Role, &current)
		if errors.Is(err, sql.ErrNoRows) {
			return Principal{}, errTokenUserGone
		}
		if err != nil {
			return Principal{}, fmt.Errorf("load token user: %w", err)
		}
		if current != version {
			return Principal{}, errTokenPasswordChanged
		}
		return p, nil
	}}
	ctx = context.WithValue(ctx, principalKey{}, c)
	if op != oas.CreateOrderOperation {
		p, err := principalFrom(ctx)
		if err != nil {
			return ctx, err
		}
		if adminOperations[op] && !p.IsAdmin() {
			return ctx, errForbidden
		}
	}
	return ctx, nil
}

// dummyHash returns a hash that is compared against when an e-mail address is unknown, so
// that the answer takes as long as for a wrong password.
func (h *Handler) dummyHash() []byte {
	h.dummyOnce.Do(func() {
		h.dummy, _ = bcrypt.GenerateFromPassword([]byte("orderflow-no-such-user"), h.bcryptCost)
	})
	return h.dummy
}

// Login exchanges an e-mail address and password for a token.
func (h *Handler) Login(ctx context.Context, req *oas.LoginRequest) (*oas.LoginResponse, error) {
	if err := loginChecks(req).err(); err != nil {
		return nil, err
	}
	email := domain.NormalizeEmail(req.Email)
	// Known and unknown addresses take from the budget alike, so a 429 says nothing about
	// whether an account exists.
	info := requestInfoFrom(ctx)
	client := clientKey(info.remoteAddr)
	if ok, wait, byAddress := h.logins.take(email, client); !ok {
		info.retryAfter = retryAfter(wait)
		if byAddress {
			return nil, errTooManyFromClient
		}
		return nil, errTooManyLogins
	}
	// Only a wrong guess keeps what it took: a login that fails because the database is
	// away is given it back, or an outage would leave its users refused for a minute.
	guessed := false
	defer func() {
		if !guessed {
			h.logins.refund(email, client)
		}
	}()
	u, err := h.client.User.Query().Where(user.Email(email)).Only(ctx)
	if ent.IsNotFound(err) {
		_ = bcrypt.CompareHashAndPassword(h.dummyHash(), []byte(req.Password))
		guessed = true
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, fmt.Errorf("load user: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(req.Password)) != nil {
		guessed = true
		return nil, errBadCredentials
	}
	token, exp, err := h.tokens.Issue(u.ID, u.TokenVersion, string(u.Role), h.now())
	if err != nil {
		return nil, err
	}
	return &oas.LoginResponse{Token: token, ExpiresAt: exp, User: userOut(u)}, nil
}

// loginChecks are the field checks of Login's body: an e-mail address or a password that
// breaks the rules of every account's belongs to no account.
func loginChecks(req *oas.LoginRequest) fieldChecks {
	var c fieldChecks
	_, err := normalizeEmail(req.Email)
	c.check("email", err)
	c.check("password", domain.ValidatePassword(req.Password))
	return c
}

var (
	errBadCredentials = problem(http.StatusUnauthorized, "The e-mail address or the password is wrong.")
	errTooManyLogins  = problem(http.StatusTooManyRequests, "Too many failed logins for this e-mail address; try again later.")
	// errTooManyFromClient is the answer to a login or a check of a current password once
	// the client's address has used up the budget that both take from.
	errTooManyFromClient = problem(http.StatusTooManyRequests, "Too many failed logins and wrong current passwords from your network address; try again later.")
)

// hashPassword returns the bcrypt hash of password.
func (h *Handler) hashPassword(password string) (string, error) {
	b, err := bcrypt.GenerateFromPassword([]byte(password), h.bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(b), nil
}
