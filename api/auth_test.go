package api

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"orderflow/api/oas"
)

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	anon := e.clientWith("")

	res, err := anon.Login(ctx, &oas.LoginRequest{Email: strings.ToUpper(e.cfg.Admin.Email), Password: e.cfg.Admin.Password})
	if err != nil {
		t.Fatalf("login with upper-case e-mail: %v", err)
	}
	if res.User.ID != e.adminID || res.User.Role != oas.RoleAdmin || res.User.Email != e.cfg.Admin.Email {
		t.Errorf("login user = %+v", res.User)
	}
	if d := time.Until(res.ExpiresAt); d < e.cfg.Auth.TokenTTL.D()-time.Minute || d > e.cfg.Auth.TokenTTL.D()+time.Second {
		t.Errorf("expiresAt %s is not one TTL (%s) away", res.ExpiresAt, e.cfg.Auth.TokenTTL)
	}
	if _, err := e.clientWith(res.Token).ListUsers(ctx, oas.ListUsersParams{}); err != nil {
		t.Errorf("the token does not work: %v", err)
	}

	t.Run("bad e-mail format", func(t *testing.T) {
		_, err := anon.Login(ctx, &oas.LoginRequest{Email: "not-an-address", Password: "secret1"})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "email")
	})
	// No account can have an address that is not ASCII, as the contract says: 400 and the
	// field, which tells an internationalized domain's user to write it as xn--, rather than
	// 401, which sends them to check their password.
	t.Run("address not in ASCII", func(t *testing.T) {
		// The Kelvin sign lower-cases to "k" and a no-break space is white space in Unicode:
		// neither may be taken for the ASCII address it would turn into.
		for _, email := range []string{"m\u00fcller@example.com", "mallory@b\u00fccher.example", "\u0430dmin@orderprocessing.local",
			strings.Replace(e.cfg.Admin.Email, "a", "\u212A", 1), e.cfg.Admin.Email + "\u00a0", "\u3000" + e.cfg.Admin.Email} {
			_, err := anon.Login(ctx, &oas.LoginRequest{Email: email, Password: e.cfg.Admin.Password})
			wantField(t, wantStatus(t, err, http.StatusBadRequest), "email")
		}
	})
	t.Run("short password", func(t *testing.T) {
		_, err := anon.Login(ctx, &oas.LoginRequest{Email: "a@example.com", Password: "12345"})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "password")
	})
	t.Run("password longer than any account's", func(t *testing.T) {
		_, err := anon.Login(ctx, &oas.LoginRequest{Email: e.cfg.Admin.Email, Password: e.cfg.Admin.Password + strings.Repeat("x", 73)})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "password")
	})
	t.Run("unknown e-mail and wrong password answer alike", func(t *testing.T) {
		_, err1 := anon.Login(ctx, &oas.LoginRequest{Email: "nobody@example.com", Password: e.cfg.Admin.Password})
		p1 := wantStatus(t, err1, http.StatusUnauthorized)
		_, err2 := anon.Login(ctx, &oas.LoginRequest{Email: e.cfg.Admin.Email, Password: "wrong-password"})
		p2 := wantStatus(t, err2, http.StatusUnauthorized)
		if p1.Detail != p2.Detail || p1.Title != p2.Title {
			t.Errorf("bodies differ: %+v and %+v", p1, p2)
		}
	})
}

// sign makes a token with the given claims, signed with secret.
func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret := []byte(e.cfg.Auth.JWTSecret)
	now := time.Now()
	valid := func() claims {
		return claims{Role: "admin", RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.Itoa(e.adminID),
			Issuer:    e.cfg.Auth.Issuer,
			IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		}}
	}
	good := sign(t, jwt.SigningMethodHS256, secret, valid())
	if _, err := e.clientWith(good).ListUsers(ctx, oas.ListUsersParams{}); err != nil {
		t.Fatalf("a well-formed token is refused: %v", err)
	}

	expired := valid()
	expired.IssuedAt = jwt.NewNumericDate(now.Add(-2 * time.Hour))
	expired.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour))
	wrongIssuer := valid()
	wrongIssuer.Issuer = "someone-else"
	noExpiry := valid()
	noExpiry.ExpiresAt = nil
	unknownUser := valid()
	unknownUser.Subject = "999999"

	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tamperedPayload := strings.Replace(string(payload), `"sub":"`+strconv.Itoa(e.adminID)+`"`, `"sub":"`+strconv.Itoa(e.adminID+1)+`"`, 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(tamperedPayload)) + "." + parts[2]
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid())
	hs512 := sign(t, jwt.SigningMethodHS512, secret, valid())

	tests := map[string]string{
		"expired":        sign(t, jwt.SigningMethodHS256, secret, expired),
		"wrong issuer":   sign(t, jwt.SigningMethodHS256, secret, wrongIssuer),
		"no expiry":      sign(t, jwt.SigningMethodHS256, secret, noExpiry),
		"other secret":   sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-sufficient-length!"), valid()),
		"tampered":       tampered,
		"alg none":       none,
		"alg HS512":      hs512,
		"unknown user":   sign(t, jwt.SigningMethodHS256, secret, unknownUser),
		"garbage":        "not.a.token",
		"signature only": parts[2],
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := e.clientWith(tok).ListUsers(ctx, oas.ListUsersParams{})
			wantStatus(t, err, http.StatusUnauthorized)
			res := e.do(http.MethodGet, "/api/users", tok, "", "")
			if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("got %d with WWW-Authenticate %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
			}
		})
	}

	// The 401 that every client meets, once a token's time is up, says so: the client is to
	// log in again, not look for what is wrong with the token it sends. One that only looks
	// expired, without this API's signature, gets the answer of any other bad token.
	t.Run("expired says so", func(t *testing.T) {
		for _, path := range []string{"/api/users", "/api/orders"} {
			body := problemBody(t, e.do(http.MethodGet, path, tests["expired"], "", ""), http.StatusUnauthorized)
			if body["detail"] != "The token has expired; log in again." {
				t.Errorf("GET %s: detail %q", path, body["detail"])
			}
		}
		res := e.do(http.MethodPost, "/api/orders", tests["expired"], "application/json", `{"items":[{"productId":1,"quantity":1}]}`)
		if body := problemBody(t, res, http.StatusUnauthorized); body["detail"] != "The token has expired; log in again." {
			t.Errorf("POST /api/orders: detail %q", body["detail"])
		}
		forged := sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-sufficient-length!"), expired)
		if body := problemBody(t, e.do(http.MethodGet, "/api/users", forged, "", ""), http.StatusUnauthorized); body["detail"] != "A valid bearer token is required." {
			t.Errorf("expired with another key: detail %q", body["detail"])
		}
	})

	t.Run("missing", func(t *testing.T) {
		res := e.do(http.MethodGet, "/api/products", "", "", "")
		if res.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("got %d with WWW-Authenticate %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("content type %q", ct)
		}
	})

	t.Run("deleted user", func(t *testing.T) {
		c, id := e.customer()
		if _, err := c.GetUser(ctx, oas.GetUserParams{ID: id}); err != nil {
			t.Fatal(err)
		}
		if err := e.admin.DeleteUser(ctx, oas.DeleteUserParams{ID: id}); err != nil {
			t.Fatal(err)
		}
		_, err := c.GetUser(ctx, oas.GetUserParams{ID: id})
		wantStatus(t, err, http.StatusUnauthorized)
	})

	t.Run("demoted admin loses admin rights at once", func(t *testing.T) {
		res, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: "Second Admin", Email: "admin2@example.com",
			Password: "secret1", Role: oas.NewOptRole(oas.RoleAdmin)})
		if err != nil {
			t.Fatal(err)
		}
		c := e.login("admin2@example.com", "secret1")
		if _, err := c.ListUsers(ctx, oas.ListUsersParams{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Second Admin", Email: "admin2@example.com",
			Role: oas.NewOptRole(oas.RoleCustomer)}, oas.UpdateUserParams{ID: res.Response.ID}); err != nil {
			t.Fatal(err)
		}
		_, err = c.ListUsers(ctx, oas.ListUsersParams{})
		wantStatus(t, err, http.StatusForbidden)
	})
}

func TestTokenExpiresWhileRemembered(t *testing.T) {
	t.Parallel()
	tokens := NewTokens("orderflow-test-jwt-secret-0123456789abcdef", "orderflow", 2*time.Second)
	tok, exp, err := tokens.Issue(7, 3, "customer", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time from the cache
		if id, version, err := tokens.Verify(tok); err != nil || id != 7 || version != 3 {
			t.Fatalf("fresh token: user %d version %d, %v; want user 7 version 3", id, version, err)
		}
	}
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	if _, _, err := tokens.Verify(tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("an expired token: %v, want jwt.ErrTokenExpired (which HandleBearerAuth answers as expired)", err)
	}
}

// TestTokenFromAClockAhead: a token that another API process issued by a clock a little
// ahead of this one's is good at once; the time it names as issued is not checked, only its
// expiry.
func TestTokenFromAClockAhead(t *testing.T) {
	t.Parallel()
	tokens := NewTokens("orderflow-test-jwt-secret-0123456789abcdef", "orderflow", time.Hour)
	tok, _, err := tokens.Issue(7, 0, "customer", time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if id, _, err := tokens.Verify(tok); err != nil || id != 7 {
		t.Fatalf("token issued 30s ahead: %d, %v; want user 7", id, err)
	}
}

// TestTokenUserUnreadable: a token whose user cannot be read for a reason of the server's
// (here a column the statement names is gone) is answered 500, not 401: the token is good,
// and a client told to sign in again would only be refused again.
func TestTokenUserUnreadable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.adminToken()
	if _, err := e.db.Exec(`ALTER TABLE users RENAME COLUMN role TO role_gone`); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/users", "/api/orders"} {
		res := e.do(http.MethodGet, path, tok, "", "")
		if res.StatusCode != http.StatusInternalServerError {
			t.Errorf("GET %s: status %d, want 500", path, res.StatusCode)
		}
	}
}
