package api

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/configuration"
	"orderflow/domain"
	"orderflow/internal/testutil"
)

func TestUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, custID := e.customer()
	_, otherID := e.customer()

	t.Run("create defaults to customer and lower-cases the e-mail", func(t *testing.T) {
		res, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: "Ann", Email: "Ann@Example.COM", Password: "secret1"})
		if err != nil {
			t.Fatal(err)
		}
		u := res.Response
		if u.Role != oas.RoleCustomer || u.Email != "ann@example.com" || u.Name != "Ann" || u.CreatedAt.IsZero() {
			t.Errorf("created %+v", u)
		}
		if res.Location != "/api/users/"+strconv.Itoa(u.ID) {
			t.Errorf("Location %q", res.Location)
		}
		var hash string
		if err := e.db.QueryRow(`SELECT password_hash FROM users WHERE id = $1`, u.ID).Scan(&hash); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(hash, "$2") {
			t.Errorf("password stored as %q, want a bcrypt hash", hash)
		}
		e.login("ANN@example.com", "secret1")
	})
	t.Run("create admin", func(t *testing.T) {
		res, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: "Boss", Email: "boss@example.com", Password: "secret1", Role: oas.NewOptRole(oas.RoleAdmin)})
		if err != nil || res.Response.Role != oas.RoleAdmin {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("create: email taken in another case", func(t *testing.T) {
		_, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: "Ann 2", Email: "ANN@example.com", Password: "secret1"})
		wantStatus(t, err, http.StatusConflict)
	})
	t.Run("create: invalid", func(t *testing.T) {
		tests := []struct {
			field string
			req   oas.UserCreate
		}{
			{"name", oas.UserCreate{Name: "", Email: "x1@example.com", Password: "secret1"}},
			{"name", oas.UserCreate{Name: strings.Repeat("n", 101), Email: "x2@example.com", Password: "secret1"}},
			{"name", oas.UserCreate{Name: " \t\u00a0\u3000", Email: "x6@example.com", Password: "secret1"}},
			{"email", oas.UserCreate{Name: "X", Email: "not-an-email", Password: "secret1"}},
			{"email", oas.UserCreate{Name: "X", Email: strings.Repeat("e", 95) + "@example.com", Password: "secret1"}},
			{"email", oas.UserCreate{Name: "X", Email: "\u212Aate@example.com", Password: "secret1"}}, // not "kate@example.com"
			{"email", oas.UserCreate{Name: "X", Email: "x7@example.com\u00a0", Password: "secret1"}},
			{"password", oas.UserCreate{Name: "X", Email: "x3@example.com", Password: "12345"}},
		}
		for _, tt := range tests {
			_, err := e.admin.CreateUser(ctx, &tt.req)
			wantField(t, wantStatus(t, err, http.StatusBadRequest), tt.field)
		}
		res := e.do(http.MethodPost, "/api/users", e.adminToken(), "application/json",
			`{"name":"X","email":"x4@example.com","password":"secret1","role":"superuser"}`)
		problemBody(t, res, http.StatusBadRequest)
	})
	t.Run("create: customer forbidden", func(t *testing.T) {
		_, err := cust.CreateUser(ctx, &oas.UserCreate{Name: "X", Email: "x5@example.com", Password: "secret1"})
		wantStatus(t, err, http.StatusForbidden)
	})

	t.Run("list: admin", func(t *testing.T) {
		res, err := e.admin.ListUsers(ctx, oas.ListUsersParams{Limit: oas.NewOptInt(2), Offset: oas.NewOptInt(1)})
		if err != nil {
			t.Fatal(err)
		}
		var total int
		if err := e.db.QueryRow(`SELECT count(*) FROM users`).Scan(&total); err != nil {
			t.Fatal(err)
		}
		if res.XTotalCount != total || len(res.Response) != 2 || res.Response[0].ID >= res.Response[1].ID {
			t.Errorf("total %d (want %d), page %+v", res.XTotalCount, total, res.Response)
		}
		all, err := e.admin.ListUsers(ctx, oas.ListUsersParams{})
		if err != nil || len(all.Response) != total || all.Response[0].ID != e.adminID {
			t.Errorf("default page: %d users, %v", len(all.Response), err)
		}
	})
	t.Run("list: bad limit", func(t *testing.T) {
		for _, l := range []int{0, 1001} {
			_, err := e.admin.ListUsers(ctx, oas.ListUsersParams{Limit: oas.NewOptInt(l)})
			wantField(t, wantStatus(t, err, http.StatusBadRequest), "limit")
		}
		_, err := e.admin.ListUsers(ctx, oas.ListUsersParams{Offset: oas.NewOptInt(-1)})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "offset")
	})
	t.Run("list: customer forbidden", func(t *testing.T) {
		_, err := cust.ListUsers(ctx, oas.ListUsersParams{})
		wantStatus(t, err, http.StatusForbidden)
	})

	t.Run("get: self and admin", func(t *testing.T) {
		for _, c := range []*oas.Client{cust, e.admin} {
			u, err := c.GetUser(ctx, oas.GetUserParams{ID: custID})
			if err != nil || u.ID != custID {
				t.Fatalf("%+v, %v", u, err)
			}
		}
	})
	t.Run("get: another user is not found to a customer", func(t *testing.T) {
		_, err := cust.GetUser(ctx, oas.GetUserParams{ID: otherID})
		wantStatus(t, err, http.StatusNotFound)
		_, err = cust.GetUser(ctx, oas.GetUserParams{ID: e.adminID})
		wantStatus(t, err, http.StatusNotFound)
	})
	t.Run("get: missing", func(t *testing.T) {
		_, err := e.admin.GetUser(ctx, oas.GetUserParams{ID: 999999})
		wantStatus(t, err, http.StatusNotFound)
	})

	t.Run("update: self, with password", func(t *testing.T) {
		c, id := e.customer()
		u, err := c.UpdateUser(ctx, &oas.UserUpdate{Name: "Renamed", Email: "Renamed@Example.com",
			Password: oas.NewOptString("newsecret"), CurrentPassword: oas.NewOptString("secret1")}, oas.UpdateUserParams{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "Renamed" || u.Email != "renamed@example.com" || u.Role != oas.RoleCustomer {
			t.Errorf("updated %+v", u)
		}
		e.login("renamed@example.com", "newsecret")
	})
	t.Run("update: customer may not set a role, even its own", func(t *testing.T) {
		c, id := e.customer()
		u, _ := c.GetUser(ctx, oas.GetUserParams{ID: id})
		_, err := c.UpdateUser(ctx, &oas.UserUpdate{Name: u.Name, Email: u.Email, Role: oas.NewOptRole(oas.RoleAdmin)}, oas.UpdateUserParams{ID: id})
		wantStatus(t, err, http.StatusForbidden)
		_, err = c.UpdateUser(ctx, &oas.UserUpdate{Name: u.Name, Email: u.Email, Role: oas.NewOptRole(oas.RoleCustomer)}, oas.UpdateUserParams{ID: id})
		wantStatus(t, err, http.StatusForbidden)
	})
	t.Run("update: admin sets a role", func(t *testing.T) {
		_, id := e.customer()
		u, err := e.admin.GetUser(ctx, oas.GetUserParams{ID: id})
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: u.Name, Email: u.Email, Role: oas.NewOptRole(oas.RoleAdmin)}, oas.UpdateUserParams{ID: id})
		if err != nil || got.Role != oas.RoleAdmin {
			t.Fatalf("%+v, %v", got, err)
		}
	})
	t.Run("update: another user is not found to a customer", func(t *testing.T) {
		_, err := cust.UpdateUser(ctx, &oas.UserUpdate{Name: "Hijack", Email: "hijack@example.com"}, oas.UpdateUserParams{ID: otherID})
		wantStatus(t, err, http.StatusNotFound)
		o, _ := e.admin.GetUser(ctx, oas.GetUserParams{ID: otherID})
		if o.Name == "Hijack" {
			t.Error("another customer's name was changed")
		}
	})
	t.Run("update: invalid, missing, email taken", func(t *testing.T) {
		_, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "", Email: "y@example.com"}, oas.UpdateUserParams{ID: custID})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "name")
		_, err = cust.UpdateUser(ctx, &oas.UserUpdate{Name: "   ", Email: "y@example.com"}, oas.UpdateUserParams{ID: custID})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "name")
		_, err = e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Y", Email: "bad"}, oas.UpdateUserParams{ID: custID})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "email")
		_, err = e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Y", Email: "y@example.com", Password: oas.NewOptString("123")}, oas.UpdateUserParams{ID: custID})
		wantField(t, wantStatus(t, err, http.StatusBadRequest), "password")
		_, err = e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Y", Email: "y@example.com"}, oas.UpdateUserParams{ID: 999999})
		wantStatus(t, err, http.StatusNotFound)
		_, err = cust.UpdateUser(ctx, &oas.UserUpdate{Name: "Y", Email: strings.ToUpper(e.cfg.Admin.Email),
			CurrentPassword: oas.NewOptString("secret1")}, oas.UpdateUserParams{ID: custID})
		wantStatus(t, err, http.StatusConflict)
	})

	t.Run("delete", func(t *testing.T) {
		c, id := e.customer()
		err := c.DeleteUser(ctx, oas.DeleteUserParams{ID: id})
		wantStatus(t, err, http.StatusForbidden)
		if err := e.admin.DeleteUser(ctx, oas.DeleteUserParams{ID: id}); err != nil {
			t.Fatal(err)
		}
		_, err = e.admin.GetUser(ctx, oas.GetUserParams{ID: id})
		wantStatus(t, err, http.StatusNotFound)
		err = e.admin.DeleteUser(ctx, oas.DeleteUserParams{ID: id})
		wantStatus(t, err, http.StatusNotFound)
	})
	t.Run("delete: the configured administrator's account stays", func(t *testing.T) {
		// It is the account EnsureAdmin keeps; without it no admin may be left until the
		// API starts again.
		err := e.admin.DeleteUser(ctx, oas.DeleteUserParams{ID: e.adminID})
		p := wantStatus(t, err, http.StatusConflict)
		if want := "The configured administrator's account cannot be deleted."; p.Detail.Value != want {
			t.Errorf("detail %q, want %q", p.Detail.Value, want)
		}
		if _, err := e.admin.GetUser(ctx, oas.GetUserParams{ID: e.adminID}); err != nil {
			t.Fatalf("the account is gone: %v", err)
		}
	})
	t.Run("update: the configured administrator's password stays the configuration's", func(t *testing.T) {
		// The next start of the API would store admin.password again.
		_, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: e.cfg.Admin.Name, Email: e.cfg.Admin.Email,
			Password: oas.NewOptString("another-secret"), CurrentPassword: oas.NewOptString(e.cfg.Admin.Password)},
			oas.UpdateUserParams{ID: e.adminID})
		p := wantStatus(t, err, http.StatusConflict)
		if p.Detail.Value != errConfiguredAdminPassword.Detail {
			t.Errorf("detail %q, want %q", p.Detail.Value, errConfiguredAdminPassword.Detail)
		}
		if res := e.loginRaw(e.cfg.Admin.Email, e.cfg.Admin.Password); res.StatusCode != http.StatusOK {
			t.Errorf("login with admin.password: %d, want 200", res.StatusCode)
		}
	})
	t.Run("update: the configured administrator's name stays the configuration's", func(t *testing.T) {
		// The next start of the API would store admin.name again.
		_, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Root", Email: e.cfg.Admin.Email},
			oas.UpdateUserParams{ID: e.adminID})
		p := wantStatus(t, err, http.StatusConflict)
		if p.Detail.Value != errConfiguredAdminName.Detail {
			t.Errorf("detail %q, want %q", p.Detail.Value, errConfiguredAdminName.Detail)
		}
		u, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: e.cfg.Admin.Name, Email: e.cfg.Admin.Email},
			oas.UpdateUserParams{ID: e.adminID})
		if err != nil || u.Name != e.cfg.Admin.Name {
			t.Fatalf("update with admin.name: %+v, %v", u, err)
		}
	})
	t.Run("delete: user with orders", func(t *testing.T) {
		c, id := e.customer()
		pid := e.product("5.00", 10)
		if _, err := c.CreateOrder(ctx, &oas.OrderCreate{Items: []oas.OrderItemInput{{ProductId: pid, Quantity: 1}}}, oas.CreateOrderParams{}); err != nil {
			t.Fatal(err)
		}
		err := e.admin.DeleteUser(ctx, oas.DeleteUserParams{ID: id})
		wantStatus(t, err, http.StatusConflict)
	})
}

// TestEnsureAdminRefusesAnAddressNoAccountMayHave checks that the API does not start with an
// admin.email that it would refuse for any account (non-ASCII letters, invisible characters,
// a display name), and writes no account for it.
func TestEnsureAdminRefusesAnAddressNoAccountMayHave(t *testing.T) {
	t.Parallel()
	_, _, client := openDatabase(t)
	for _, addr := range []string{
		"admin@exämple.com",
		"ädmin@example.com",
		"аdmin@example.com", // Cyrillic а
		"admin\u200b@example.com",
		"admin@example.com\u200e",
		"admin.example.com",
		"admin <admin@example.com>",
		strings.Repeat("a", 89) + "@example.com",
	} {
		if err := userChecks("Admin", addr, nil).err(); err == nil {
			t.Fatalf("%q: the API accepts it for a user", addr)
		}
		admin := configuration.Admin{Name: "Admin", Email: addr, Password: "admin-password"}
		err := EnsureAdmin(ctx, client, admin, bcrypt.MinCost, discard())
		if err == nil || !strings.Contains(err.Error(), "admin.email") {
			t.Errorf("%q: EnsureAdmin = %v, want an error naming admin.email", addr, err)
		}
	}
	if n, err := client.User.Query().Count(ctx); err != nil || n != 0 {
		t.Errorf("%d accounts written (%v), want none", n, err)
	}
	// The ASCII form of an internationalized domain is an address like any other.
	admin := configuration.Admin{Name: "Admin", Email: "admin@xn--exmple-cua.com", Password: "admin-password"}
	if err := EnsureAdmin(ctx, client, admin, bcrypt.MinCost, discard()); err != nil {
		t.Errorf("EnsureAdmin with an xn-- domain: %v", err)
	}
}

// TestAdminEmailReserved checks that only an admin account may take the configured admin
// address, which the API's start-up keeps as the admin's: with the address free (the
// administrator's account moved by SQL), a customer cannot take it for themselves, nor an
// admin give it to a customer, nor its holder keep it while giving up the admin role.
func TestAdminEmailReserved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	adminEmail := e.cfg.Admin.Email
	cust, custID := e.customer()
	reserved := func(t *testing.T, err error) {
		t.Helper()
		p := wantStatus(t, err, http.StatusConflict)
		if !strings.Contains(p.Detail.Value, "reserved for the administrator") {
			t.Errorf("detail %q does not say the address is reserved", p.Detail.Value)
		}
	}
	// Every account here has the password secret1, which a user changing its own address
	// gives; an admin changing another's account gives none.
	update := func(c *oas.Client, id int, email string, role oas.OptRole) (*oas.User, error) {
		return c.UpdateUser(ctx, &oas.UserUpdate{Name: "Some One", Email: email, Role: role,
			CurrentPassword: oas.NewOptString("secret1")}, oas.UpdateUserParams{ID: id})
	}

	if _, err := e.db.Exec(`UPDATE users SET email = 'boss@example.com' WHERE id = $1`, e.adminID); err != nil {
		t.Fatal(err)
	}
	t.Run("customer takes it", func(t *testing.T) {
		_, err := update(cust, custID, strings.ToUpper(adminEmail), oas.OptRole{})
		reserved(t, err)
		var email, role string
		if err := e.db.QueryRow(`SELECT email, role FROM users WHERE id = $1`, custID).Scan(&email, &role); err != nil {
			t.Fatal(err)
		}
		if email == adminEmail || role != "customer" {
			t.Errorf("customer now %s, %s", email, role)
		}
	})
	t.Run("customer takes it with a new password", func(t *testing.T) {
		_, err := cust.UpdateUser(ctx, &oas.UserUpdate{Name: "Some One", Email: adminEmail,
			Password: oas.NewOptString("secret2"), CurrentPassword: oas.NewOptString("secret1")}, oas.UpdateUserParams{ID: custID})
		reserved(t, err)
	})
	t.Run("admin gives it to a customer", func(t *testing.T) {
		_, err := update(e.admin, custID, adminEmail, oas.OptRole{})
		reserved(t, err)
		_, err = update(e.admin, custID, adminEmail, oas.NewOptRole(oas.RoleCustomer))
		reserved(t, err)
	})
	t.Run("admin creates a customer with it", func(t *testing.T) {
		_, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: "X", Email: adminEmail, Password: "secret1"})
		reserved(t, err)
		_, err = e.admin.CreateUser(ctx, &oas.UserCreate{Name: "X", Email: adminEmail, Password: "secret1", Role: oas.NewOptRole(oas.RoleCustomer)})
		reserved(t, err)
	})
	t.Run("no such user", func(t *testing.T) {
		_, err := update(e.admin, 1<<30, adminEmail, oas.OptRole{})
		wantStatus(t, err, http.StatusNotFound)
	})

	// An admin account may hold it, and keeps it only as long as it stays an admin.
	res, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: "Root", Email: adminEmail, Password: "secret1", Role: oas.NewOptRole(oas.RoleAdmin)})
	if err != nil {
		t.Fatalf("an admin account with the address: %v", err)
	}
	root := e.login(adminEmail, "secret1")
	// Its name is admin.name, which the API's start-up stores.
	_, err = update(root, res.Response.ID, adminEmail, oas.OptRole{})
	if p := wantStatus(t, err, http.StatusConflict); p.Detail.Value != errConfiguredAdminName.Detail {
		t.Errorf("its holder renames itself: detail %q, want %q", p.Detail.Value, errConfiguredAdminName.Detail)
	}
	u, err := root.UpdateUser(ctx, &oas.UserUpdate{Name: e.cfg.Admin.Name, Email: adminEmail},
		oas.UpdateUserParams{ID: res.Response.ID})
	if err != nil || u.Name != e.cfg.Admin.Name {
		t.Fatalf("its holder takes admin.name: %+v, %v", u, err)
	}
	_, err = update(root, res.Response.ID, adminEmail, oas.NewOptRole(oas.RoleCustomer))
	reserved(t, err)
	if err := EnsureAdmin(ctx, e.client, e.cfg.Admin, bcrypt.MinCost, discard()); err != nil {
		t.Errorf("start-up with the address on an admin account: %v", err)
	}
}

// TestConfiguredAdminKeepsItsAddress: the account holding admin.email cannot give the address
// up, alone or with its role, so that it cannot be renamed and then deleted or demoted like
// any other account; nor can its name change, which is admin.name.
func TestConfiguredAdminKeepsItsAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	update := func(email string, role oas.OptRole) error {
		_, err := e.admin.UpdateUser(ctx, &oas.UserUpdate{Name: "Boss", Email: email, Role: role,
			CurrentPassword: oas.NewOptString(e.cfg.Admin.Password)}, oas.UpdateUserParams{ID: e.adminID})
		return err
	}
	for _, tc := range []struct {
		name string
		role oas.OptRole
	}{
		{"renamed", oas.OptRole{}},
		{"renamed and demoted", oas.NewOptRole(oas.RoleCustomer)},
		{"renamed, still an admin", oas.NewOptRole(oas.RoleAdmin)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := wantStatus(t, update("boss@example.com", tc.role), http.StatusConflict)
			if !strings.Contains(p.Detail.Value, "change admin.email in the configuration") {
				t.Errorf("detail %q does not say how to move the administrator", p.Detail.Value)
			}
		})
	}
	var name, email, role string
	if err := e.db.QueryRow(`SELECT name, email, role FROM users WHERE id = $1`, e.adminID).Scan(&name, &email, &role); err != nil {
		t.Fatal(err)
	}
	if email != e.cfg.Admin.Email || role != "admin" || name == "Boss" {
		t.Errorf("the administrator's account is now %s, %s, %s", name, email, role)
	}
	err := e.admin.DeleteUser(ctx, oas.DeleteUserParams{ID: e.adminID})
	wantStatus(t, err, http.StatusConflict)
	p := wantStatus(t, update(strings.ToUpper(e.cfg.Admin.Email), oas.OptRole{}), http.StatusConflict)
	if p.Detail.Value != errConfiguredAdminName.Detail {
		t.Errorf("the administrator renames itself, keeping its address: detail %q, want %q", p.Detail.Value, errConfiguredAdminName.Detail)
	}
}

// TestChangingOnesOwnAddressOrPasswordNeedsTheCurrentPassword: a token alone cannot give its
// account a new e-mail address or password, which would take the account from its owner for
// good; a new name needs none, nor does an admin changing another user's account. Wrong
// current passwords have a budget of the user's, apart from the address's failed logins.
func TestChangingOnesOwnAddressOrPasswordNeedsTheCurrentPassword(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(cfg *configuration.Config) { cfg.Auth.LoginAttemptsPerMinute = 3 }, bcrypt.MinCost)
	cust, id := e.customer()
	u, err := cust.GetUser(ctx, oas.GetUserParams{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	update := func(c *oas.Client, id int, email string, password, current oas.OptString) error {
		_, err := c.UpdateUser(ctx, &oas.UserUpdate{Name: "Grace", Email: email, Password: password, CurrentPassword: current},
			oas.UpdateUserParams{ID: id})
		return err
	}
	none := oas.OptString{}
	if err := update(cust, id, u.Email, none, none); err != nil {
		t.Fatalf("a new name alone: %v", err)
	}
	wantField(t, wantStatus(t, update(cust, id, "grace@example.com", none, none), http.StatusBadRequest), "currentPassword")
	wantField(t, wantStatus(t, update(cust, id, u.Email, oas.NewOptString("hopper1"), none), http.StatusBadRequest), "currentPassword")
	p := wantStatus(t, update(cust, id, "grace@example.com", none, oas.NewOptString("wrong1")), http.StatusForbidden)
	if p.Detail.Value != "currentPassword is not the account's password." {
		t.Errorf("detail %q", p.Detail.Value)
	}
	if got, _ := cust.GetUser(ctx, oas.GetUserParams{ID: id}); got.Email != u.Email {
		t.Errorf("address changed to %s by a refused update", got.Email)
	}
	if err := update(cust, id, "grace@example.com", oas.NewOptString("hopper1"), oas.NewOptString("secret1")); err != nil {
		t.Fatalf("with the current password: %v", err)
	}
	e.login("grace@example.com", "hopper1") // the new address and password sign in

	// An admin resets another's account without its password, and gives its own to change
	// its own.
	if err := update(e.admin, id, "grace.hopper@example.com", oas.NewOptString("navy123"), none); err != nil {
		t.Fatalf("an admin changing a customer: %v", err)
	}
	admin, err := e.admin.GetUser(ctx, oas.GetUserParams{ID: e.adminID})
	if err != nil {
		t.Fatal(err)
	}
	wantField(t, wantStatus(t, update(e.admin, e.adminID, admin.Email, oas.NewOptString("another1"), none), http.StatusBadRequest), "currentPassword")

	// With the wrong one above, two more use up the user's own three checks.
	grace := e.login("grace.hopper@example.com", "navy123")
	for range 2 {
		wantStatus(t, update(grace, id, "grace@example.com", none, oas.NewOptString("wrong1")), http.StatusForbidden)
	}
	p = wantStatus(t, update(grace, id, "grace@example.com", none, oas.NewOptString("navy123")), http.StatusTooManyRequests)
	if p.Detail.Value != "Too many wrong current passwords for this account; try again later." {
		t.Errorf("detail %q", p.Detail.Value)
	}

	// Failed logins for an address, which anyone can send, do not keep its user from
	// changing its password.
	other, otherID := e.customer()
	o, err := other.GetUser(ctx, oas.GetUserParams{ID: otherID})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		e.loginRaw(o.Email, "wrong1").Body.Close()
	}
	if res := e.loginRaw(o.Email, "secret1"); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("login after failed ones: %d, want 429", res.StatusCode)
	}
	if err := update(other, otherID, o.Email, oas.NewOptString("another1"), oas.NewOptString("secret1")); err != nil {
		t.Errorf("a password change after failed logins for the address: %v", err)
	}
}

// TestACurrentPasswordPastBcryptsLimitIsRefused: bcrypt compares a password's first 72
// bytes only, so a current password longer than that would pass for an account whose
// password it begins with.
func TestACurrentPasswordPastBcryptsLimitIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	long := strings.Repeat("p", domain.MaxPasswordBytes)
	u, err := e.admin.CreateUser(ctx, &oas.UserCreate{Name: "Long", Email: "long@example.com", Password: long})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.login("long@example.com", long).UpdateUser(ctx, &oas.UserUpdate{
		Name: "Long", Email: "long@example.com", Password: oas.NewOptString("another1"), CurrentPassword: oas.NewOptString(long + "x"),
	}, oas.UpdateUserParams{ID: u.Response.ID})
	wantField(t, wantStatus(t, err, http.StatusBadRequest), "currentPassword")
	e.login("long@example.com", long) // the password is as it was
}

// TestAnUpdateWithoutTheCurrentPasswordDoesNotUndoAChangeMadeMeanwhile: an update of one's own
// name needs no current password for the address it keeps; when the owner moves the account
// to a new address while that update runs, the update does not put the old address back.
func TestAnUpdateWithoutTheCurrentPasswordDoesNotUndoAChangeMadeMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cust, id := e.customer()
	u, err := cust.GetUser(ctx, oas.GetUserParams{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	owner, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Rollback()
	if _, err := owner.ExecContext(ctx, `UPDATE users SET email = 'moved@example.com' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := cust.UpdateUser(ctx, &oas.UserUpdate{Name: "Token Holder", Email: u.Email}, oas.UpdateUserParams{ID: id})
		done <- err
	}()
	// The update has read the account as it was and waits for the owner's row lock.
	testutil.Eventually(t, 5*time.Second, "the update waiting for the owner's change", func() bool {
		var n int
		err := e.db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE "users"%'`).Scan(&n)
		return err == nil && n == 1
	})
	if err := owner.Commit(); err != nil {
		t.Fatal(err)
	}
	p := wantStatus(t, <-done, http.StatusConflict)
	if !strings.Contains(p.Detail.Value, "changed while this request was handled") {
		t.Errorf("detail %q", p.Detail.Value)
	}
	var email, name string
	if err := e.db.QueryRow(`SELECT email, name FROM users WHERE id = $1`, id).Scan(&email, &name); err != nil {
		t.Fatal(err)
	}
	if email != "moved@example.com" || name == "Token Holder" {
		t.Errorf("account now %s, %q: the owner's change was undone", email, name)
	}
}
