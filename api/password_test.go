package api

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/internal/testutil"
)

// staleTokenDetail is the answer to a token issued before its user's password was changed.
const staleTokenDetail = "The token was issued before the user's password was changed; log in again."

// wantStaleToken fails unless err is the 401 answer to a token issued before its user's
// password was changed.
func wantStaleToken(t *testing.T, what string, err error) {
	t.Helper()
	var pe *oas.ErrorStatusCode
	if !errors.As(err, &pe) || pe.StatusCode != http.StatusUnauthorized || pe.Response.Detail.Value != staleTokenDetail {
		t.Errorf("%s: %v; want 401 %q", what, err, staleTokenDetail)
	}
}

// getUser reads user id with tok.
func (e *env) getUser(tok string, id int) (*oas.User, error) {
	return e.clientWith(tok).GetUser(ctx, oas.GetUserParams{ID: id})
}

// orderWith places an order of one unit of product with tok, with an Idempotency-Key
// unless key is "".
func (e *env) orderWith(tok string, product int, key string) error {
	var params oas.CreateOrderParams
	if key != "" {
		params.IdempotencyKey = oas.NewOptString(key)
	}
	_, err := e.clientWith(tok).CreateOrder(ctx, &oas.OrderCreate{Items: items(product, 1)}, params)
	return err
}

// setPassword changes the password of user u with c, keeping its name and address; current,
// unless "", is the password as it is, which users changing their own give.
func setPassword(t *testing.T, c *oas.Client, u *oas.User, password, current string) {
	t.Helper()
	req := &oas.UserUpdate{Name: u.Name, Email: u.Email, Password: oas.NewOptString(password)}
	if current != "" {
		req.CurrentPassword = oas.NewOptString(current)
	}
	if _, err := c.UpdateUser(ctx, req, oas.UpdateUserParams{ID: u.ID}); err != nil {
		t.Fatalf("change the password of user %d: %v", u.ID, err)
	}
}

// TestPasswordChangeEndsEarlierTokens: a changed password, by the user itself or by an admin,
// refuses every token issued before it, on an operation that reads the user first and on
// POST /api/orders, whose own statement reads it; a token issued after it works, and a change
// of the name alone ends no token.
func TestPasswordChangeEndsEarlierTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pid := e.product("1.00", 100)
	tok, id := e.customerToken()
	u, err := e.getUser(tok, id)
	if err != nil {
		t.Fatal(err)
	}

	u.Name = "Renamed Customer"
	if _, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: u.Name, Email: u.Email}, oas.UpdateUserParams{ID: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.getUser(tok, id); err != nil {
		t.Fatalf("GET after a change of the name alone: %v", err)
	}
	if err := e.orderWith(tok, pid, ""); err != nil {
		t.Fatalf("POST /api/orders after a change of the name alone: %v", err)
	}

	// The user's own change ends the token it was made with, too.
	setPassword(t, e.clientWith(tok), u, "secret2", "secret1")
	_, err = e.getUser(tok, id)
	wantStaleToken(t, "GET /api/users/{id} after the user changed its password", err)
	wantStaleToken(t, "POST /api/orders after the user changed its password", e.orderWith(tok, pid, ""))
	wantStaleToken(t, "POST /api/orders with an Idempotency-Key after the user changed its password",
		e.orderWith(tok, pid, "after-the-change"))

	fresh := e.loginToken(u.Email, "secret2")
	if _, err := e.getUser(fresh, id); err != nil {
		t.Fatalf("GET with a token issued after the password change: %v", err)
	}
	if err := e.orderWith(fresh, pid, ""); err != nil {
		t.Fatalf("POST /api/orders with a token issued after the password change: %v", err)
	}

	// An admin's change ends the user's tokens, and not the admin's own.
	setPassword(t, e.admin, u, "secret3", "")
	_, err = e.getUser(fresh, id)
	wantStaleToken(t, "GET /api/users/{id} after an admin changed the password", err)
	wantStaleToken(t, "POST /api/orders after an admin changed the password", e.orderWith(fresh, pid, ""))
	if _, err := e.admin.GetUser(ctx, oas.GetUserParams{ID: id}); err != nil {
		t.Fatalf("the admin's token after it changed another user's password: %v", err)
	}
	if _, err := e.getUser(e.loginToken(u.Email, "secret3"), id); err != nil {
		t.Fatalf("GET with a token issued after the admin's change: %v", err)
	}
	if s := e.stock(pid); s != 98 {
		t.Errorf("stock %d, want 98: the refused orders took none", s)
	}
}

// TestPasswordChangeEndsTokensWithoutVersion: a token issued before tokens named the version
// of their user's password keeps working until the password changes.
func TestPasswordChangeEndsTokensWithoutVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pid := e.product("1.00", 10)
	_, id := e.customerToken()
	u, err := e.admin.GetUser(ctx, oas.GetUserParams{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	// The claims of the tokens issued before the version was written into them.
	type claimsWithoutVersion struct {
		Role string `json:"role"`
		jwt.RegisteredClaims
	}
	now := time.Now()
	old := sign(t, jwt.SigningMethodHS256, []byte(e.cfg.Auth.JWTSecret), claimsWithoutVersion{Role: "customer",
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.Itoa(id),
			Issuer:    e.cfg.Auth.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		}})
	if _, err := e.getUser(old, id); err != nil {
		t.Fatalf("GET with a token without a version: %v", err)
	}
	if err := e.orderWith(old, pid, ""); err != nil {
		t.Fatalf("POST /api/orders with a token without a version: %v", err)
	}

	setPassword(t, e.admin, u, "secret2", "")
	_, err = e.getUser(old, id)
	wantStaleToken(t, "GET /api/users/{id} with a token without a version, after the password changed", err)
	wantStaleToken(t, "POST /api/orders with a token without a version, after the password changed", e.orderWith(old, pid, ""))
}

// TestPasswordChangeEndsTokensInAGroupOfOrders: an order placed with a token issued before
// its caller's password changed is refused when it waits in the intake with another
// caller's order, and that order is placed.
func TestPasswordChangeEndsTokensInAGroupOfOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.product("1.00", 10), e.product("1.00", 10)
	stale, staleID := e.customerToken()
	other, _ := e.customerToken()
	u, err := e.admin.GetUser(ctx, oas.GetUserParams{ID: staleID})
	if err != nil {
		t.Fatal(err)
	}
	setPassword(t, e.admin, u, "secret2", "")

	release := e.h.intake.hold()
	staleDone, otherDone := make(chan error, 1), make(chan error, 1)
	go func() { staleDone <- e.orderWith(stale, a, "") }()
	testutil.Eventually(t, 5*time.Second, "the first order to wait in the intake", func() bool { return e.h.intake.groups.Waiting() == 1 })
	go func() { otherDone <- e.orderWith(other, b, "") }()
	testutil.Eventually(t, 5*time.Second, "the second order to wait in the intake", func() bool { return e.h.intake.groups.Waiting() == 2 })
	release()

	wantStaleToken(t, "POST /api/orders grouped with another caller's, after the password changed", <-staleDone)
	if err := <-otherDone; err != nil {
		t.Fatalf("the other caller's order in the same group: %v", err)
	}
	if e.stock(a) != 10 || e.stock(b) != 9 {
		t.Errorf("stock left %d and %d, want 10 and 9", e.stock(a), e.stock(b))
	}
}

// TestEnsureAdminEndsTokensWhenItChangesThePassword: a start-up with a new admin.password
// ends the admin's earlier tokens; one with a new admin.name alone, or with nothing new,
// ends none.
func TestEnsureAdminEndsTokensWhenItChangesThePassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.cfg.Admin
	listUsers := func(tok string) error {
		_, err := e.clientWith(tok).ListUsers(ctx, oas.ListUsersParams{})
		return err
	}
	before := e.adminToken()

	admin.Name = "Renamed Administrator"
	if err := EnsureAdmin(ctx, e.client, admin, bcrypt.MinCost, discard()); err != nil {
		t.Fatal(err)
	}
	if err := listUsers(before); err != nil {
		t.Fatalf("the admin's token after a start-up with a new name alone: %v", err)
	}

	admin.Password = "another-admin-password"
	if err := EnsureAdmin(ctx, e.client, admin, bcrypt.MinCost, discard()); err != nil {
		t.Fatal(err)
	}
	wantStaleToken(t, "GET /api/users with the admin's token after a start-up with a new admin password", listUsers(before))

	after := e.loginToken(admin.Email, admin.Password)
	if err := EnsureAdmin(ctx, e.client, admin, bcrypt.MinCost, discard()); err != nil {
		t.Fatal(err)
	}
	if err := listUsers(after); err != nil {
		t.Fatalf("the admin's token after a start-up with nothing new: %v", err)
	}
}
