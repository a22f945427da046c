package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/ent/order"
	"orderflow/ent/user"
	"orderflow/platform/db"
)

func userOut(u *ent.User) oas.User {
	return oas.User{ID: u.ID, Name: u.Name, Email: u.Email, Role: oas.Role(u.Role), CreatedAt: u.CreatedAt.UTC()}
}

// page returns the limit and offset of a list request, with the contract's defaults.
func page(limit, offset oas.OptInt) (int, int) {
	return limit.Or(100), offset.Or(0)
}

// ListUsers lists users, oldest first (admin).
func (h *Handler) ListUsers(ctx context.Context, params oas.ListUsersParams) (*oas.ListUsersOKHeaders, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	if !p.IsAdmin() {
		return nil, errForbidden
	}
	limit, offset := page(params.Limit, params.Offset)
	total, err := h.client.User.Query().Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("count users: %w", err)
	}
	users, err := h.client.User.Query().Order(ent.Asc(user.FieldID)).Limit(limit).Offset(offset).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out := make([]oas.User, len(users))
	for i, u := range users {
		out[i] = userOut(u)
	}
	return &oas.ListUsersOKHeaders{XTotalCount: total, Response: out}, nil
}

// GetUser reads a user (admin, or the user itself).
func (h *Handler) GetUser(ctx context.Context, params oas.GetUserParams) (*oas.User, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	if !p.IsAdmin() && p.ID != params.ID {
		return nil, notFound("User", params.ID)
	}
	u, err := h.client.User.Get(ctx, params.ID)
	if err != nil {
		return nil, fmt.Errorf("get user %d: %w", params.ID, orNotFound(err, "User", params.ID))
	}
	out := userOut(u)
	return &out, nil
}

// userChecks checks the fields of a user that the contract's schema cannot express: the name
// as stored text, the e-mail address by the rule of every account's (normalizeEmail), and
// the password unless it is nil (not given).
func userChecks(name, email string, password *string) fieldChecks {
	var c fieldChecks
	c.check("name", validateText(name, 1, domain.MaxNameLength))
	_, err := normalizeEmail(email)
	c.check("email", err)
	if password != nil {
		c.check("password", domain.ValidatePassword(*password))
	}
	return c
}

// createUserChecks are the field checks of CreateUser's body.
func createUserChecks(req *oas.UserCreate) fieldChecks {
	return userChecks(req.Name, req.Email, &req.Password)
}

// updateUserChecks are the field checks of UpdateUser's body.
func updateUserChecks(req *oas.UserUpdate) fieldChecks {
	var password *string
	if req.Password.Set {
		password = &req.Password.Value
	}
	c := userChecks(req.Name, req.Email, password)
	// bcrypt compares only a password's first MaxPasswordBytes bytes: a longer one would pass
	// as the account's when it begins with it.
	if req.CurrentPassword.Set && len(req.CurrentPassword.Value) > domain.MaxPasswordBytes {
		c.check("currentPassword", fmt.Errorf("must have at most %d bytes, as every account's password", domain.MaxPasswordBytes))
	}
	return c
}

// normalizeEmail returns email in the form it is stored in, or why no account may have it:
// the rule of every account's address, the configured administrator's included.
func normalizeEmail(email string) (string, error) {
	email = domain.NormalizeEmail(email)
	if err := domain.ValidateEmail(email); err != nil {
		return "", err
	}
	if !printableASCII(email) {
		return "", errors.New("must be written in ASCII (an internationalized domain in its xn-- form)")
	}
	return email, nil
}

// errNotText is the answer for strings that PostgreSQL cannot store as text.
var errNotText = errors.New("must be valid UTF-8 without NUL characters")

// validateText checks a string that is stored as text: valid UTF-8, no NUL (which
// PostgreSQL's text type cannot hold), and between min and max characters. A string that
// must not be empty must not be blank either (domain.Blank: only spaces or invisible
// characters), as admin.name.
func validateText(s string, min, max int) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return errNotText
	}
	if min > 0 && s != "" && domain.Blank(s) {
		return errBlank
	}
	return domain.ValidateLength(s, min, max)
}

// errBlank is the answer for a name that shows nothing (domain.Blank).
var errBlank = errors.New("must not be blank")

// printableASCII reports whether s holds only printable ASCII characters. Stored e-mail
// addresses are kept to them, so that no account can be created whose address looks like
// another's (a Cyrillic "а" for a Latin "a", invisible direction marks, NUL).
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

var (
	errEmailTaken         = problem(http.StatusConflict, "The e-mail address belongs to another user.")
	errAdminEmailReserved = problem(http.StatusConflict, "The e-mail address is reserved for the administrator: only an admin account may use it.")
	// The account of admin.email keeps the address: were it renamed, it could then be
	// deleted or demoted like any other, and the service left without its administrator.
	errConfiguredAdminAddress = problem(http.StatusConflict, "The configured administrator's account keeps its e-mail address: to move the administrator to another address, change admin.email in the configuration.")
)

// CreateUser creates a user (admin); the role defaults to customer.
func (h *Handler) CreateUser(ctx context.Context, req *oas.UserCreate) (*oas.UserHeaders, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	if !p.IsAdmin() {
		return nil, errForbidden
	}
	if err := createUserChecks(req).err(); err != nil {
		return nil, err
	}
	// The checks passed the address: what is left is the form it is stored in.
	email := domain.NormalizeEmail(req.Email)
	hash, err := h.hashPassword(req.Password)
	if err != nil {
		return nil, err
	}
	role := user.RoleCustomer
	if req.Role.Set {
		role = user.Role(req.Role.Value)
	}
	if email == h.adminEmail && role != user.RoleAdmin {
		return nil, errAdminEmailReserved
	}
	u, err := h.client.User.Create().
		SetName(req.Name).
		SetEmail(email).
		SetPasswordHash(hash).
		SetRole(role).
		Save(ctx)
	if db.Code(err) == db.UniqueViolation {
		return nil, errEmailTaken
	}
	if err != nil {
		return nil, createError("user", err)
	}
	return &oas.UserHeaders{Location: "/api/users/" + strconv.Itoa(u.ID), Response: userOut(u)}, nil
}

// UpdateUser replaces a user's name and e-mail address, and optionally the password, which
// ends the tokens issued before it, and (admin only) the role.
func (h *Handler) UpdateUser(ctx context.Context, req *oas.UserUpdate, params oas.UpdateUserParams) (*oas.User, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	if !p.IsAdmin() && p.ID != params.ID {
		return nil, notFound("User", params.ID)
	}
	if !p.IsAdmin() && req.Role.Set {
		return nil, problem(http.StatusForbidden, "Only an admin may set a role.")
	}
	if err := updateUserChecks(req).err(); err != nil {
		return nil, err
	}
	email := domain.NormalizeEmail(req.Email)
	self := p.ID == params.ID
	if self {
		if err := h.checkCurrentPassword(ctx, p, email, req); err != nil {
			return nil, err
		}
	}
	// Only an admin account may hold the configured admin address, and the account that
	// holds it keeps it: the configuration names the administrator by its address.
	reserved := email == h.adminEmail
	if reserved && req.Role.Set && req.Role.Value != oas.RoleAdmin {
		return nil, errAdminEmailReserved
	}
	upd := h.client.User.UpdateOneID(params.ID).SetName(req.Name).SetEmail(email)
	if req.Password.Set {
		hash, err := h.hashPassword(req.Password.Value)
		if err != nil {
			return nil, err
		}
		// Counted in the same update as the hash: counted apart, a login with the old
		// password between the two writes could get a token of the new version.
		upd.SetPasswordHash(hash).AddTokenVersion(1)
	}
	if req.Role.Set {
		upd.SetRole(user.Role(req.Role.Value))
	}
	// Both conditions are checked by the update itself, so that no change of the role or
	// the address can slip between a check and the write.
	if reserved && !req.Role.Set {
		upd.Where(user.RoleEQ(user.RoleAdmin))
	}
	if !reserved {
		upd.Where(user.EmailNEQ(h.adminEmail))
	}
	// The administrator's password and name are the configuration's: the API's start-up
	// stores admin.password and admin.name whenever the account's differ (EnsureAdmin), which
	// would undo either set here.
	if req.Password.Set || req.Name != h.adminName {
		upd.Where(user.EmailNEQ(h.adminEmail))
	}
	// The caller's own account is written only as the request found it: an address or a
	// password changed meanwhile (by the owner, where the caller may hold a leaked token) is
	// not undone by an update that needed no current password for the account as it was.
	if self {
		upd.Where(user.EmailEQ(p.Email), user.TokenVersionEQ(p.tokenVersion))
	}
	u, err := upd.Save(ctx)
	if db.Code(err) == db.UniqueViolation {
		return nil, errEmailTaken
	}
	if ent.IsNotFound(err) {
		cur, xerr := h.client.User.Query().Where(user.ID(params.ID)).
			Select(user.FieldEmail, user.FieldTokenVersion).Only(ctx)
		exists := xerr == nil
		if xerr != nil && !ent.IsNotFound(xerr) {
			return nil, fmt.Errorf("update user %d: %w", params.ID, xerr)
		}
		switch {
		case exists && self && (cur.Email != p.Email || cur.TokenVersion != p.tokenVersion):
			return nil, errAccountChanged
		case exists && req.Password.Set && cur.Email == h.adminEmail:
			return nil, errConfiguredAdminPassword
		case exists && reserved && req.Name != h.adminName && cur.Email == h.adminEmail:
			return nil, errConfiguredAdminName
		case exists && reserved:
			return nil, errAdminEmailReserved
		case exists:
			return nil, errConfiguredAdminAddress
		}
	}
	if err != nil {
		return nil, fmt.Errorf("update user %d: %w", params.ID, orNotFound(err, "User", params.ID))
	}
	out := userOut(u)
	return &out, nil
}

// checkCurrentPassword asks users who change their own e-mail address (to email) or password
// for their current password, so that their token alone, one that leaked, cannot take the
// account for good: a new address or password, with which the owner's tokens end. A wrong
// one takes from a login budget of the user's and of the client's (loginLimiter.takeCheck),
// so that a token does not make guessing the password much faster.
func (h *Handler) checkCurrentPassword(ctx context.Context, p Principal, email string, req *oas.UserUpdate) error {
	if p.Email == email && !req.Password.Set {
		return nil
	}
	if !req.CurrentPassword.Set {
		return invalid("currentPassword", "required to change your own e-mail address or password")
	}
	info := requestInfoFrom(ctx)
	client := clientKey(info.remoteAddr)
	if ok, wait, byAddress := h.logins.takeCheck(p.ID, client); !ok {
		info.retryAfter = retryAfter(wait)
		if byAddress {
			return errTooManyFromClient
		}
		return errTooManyPasswordChecks
	}
	// Only a wrong guess keeps what it took, as in Login.
	guessed := false
	defer func() {
		if !guessed {
			h.logins.refundCheck(p.ID, client)
		}
	}()
	u, err := h.client.User.Query().Where(user.ID(p.ID)).Select(user.FieldPasswordHash).Only(ctx)
	if err != nil {
		return fmt.Errorf("get user %d: %w", p.ID, orNotFound(err, "User", p.ID))
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(req.CurrentPassword.Value)) != nil {
		guessed = true
		return errWrongCurrentPassword
	}
	return nil
}

var (
	errWrongCurrentPassword    = problem(http.StatusForbidden, "currentPassword is not the account's password.")
	errTooManyPasswordChecks   = problem(http.StatusTooManyRequests, "Too many wrong current passwords for this account; try again later.")
	errAccountChanged          = problem(http.StatusConflict, "The account's e-mail address or password changed while this request was handled; read it and try again.")
	errUserHasOrders           = problem(http.StatusConflict, "The user has orders and cannot be deleted.")
	errConfiguredAdmin         = problem(http.StatusConflict, "The configured administrator's account cannot be deleted.")
	errConfiguredAdminPassword = problem(http.StatusConflict, "The configured administrator's password is admin.password in the configuration, which the API's start-up stores: change it there and restart the API.")
	errConfiguredAdminName     = problem(http.StatusConflict, "The configured administrator's name is admin.name in the configuration, which the API's start-up stores: change it there and restart the API.")
)

// DeleteUser deletes a user without orders (admin).
func (h *Handler) DeleteUser(ctx context.Context, params oas.DeleteUserParams) error {
	p, err := principalFrom(ctx)
	if err != nil {
		return err
	}
	if !p.IsAdmin() {
		return errForbidden
	}
	// Checked first for a clear answer; the foreign key still refuses an order placed in
	// between.
	has, err := h.client.Order.Query().Where(order.UserID(params.ID)).Exist(ctx)
	if err != nil {
		return fmt.Errorf("check orders of user %d: %w", params.ID, err)
	}
	if has {
		if exists, err := h.client.User.Query().Where(user.ID(params.ID)).Exist(ctx); err == nil && exists {
			return errUserHasOrders
		}
	}
	// The configured administrator's account is kept by the condition of the delete itself,
	// so that no change of its address can slip between a check and the write.
	n, err := h.client.User.Delete().Where(user.ID(params.ID), user.EmailNEQ(h.adminEmail)).Exec(ctx)
	if db.Code(err) == db.ForeignKeyViolation {
		return errUserHasOrders
	}
	if err != nil {
		return fmt.Errorf("delete user %d: %w", params.ID, err)
	}
	if n == 0 {
		exists, err := h.client.User.Query().Where(user.ID(params.ID)).Exist(ctx)
		if err != nil {
			return fmt.Errorf("delete user %d: %w", params.ID, err)
		}
		if exists {
			return errConfiguredAdmin
		}
		return notFound("User", params.ID)
	}
	return nil
}
