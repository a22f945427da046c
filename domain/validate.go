package domain

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of user and product fields, in characters unless named bytes. The contract
// (openapi.yaml's minLength and maxLength) and, for stored fields, ent/schema (its
// validators and CHECKs) state the same limits: a change to one changes all three.
const (
	MaxNameLength        = 100
	MaxEmailLength       = 100
	MinPasswordLength    = 6
	MaxPasswordBytes     = 72 // bcrypt ignores anything longer
	MaxDescriptionLength = 500
)

// Roles a user can have.
const (
	RoleAdmin    = "admin"
	RoleCustomer = "customer"
)

var (
	// ErrInvalidEmail is returned for an address that is not a plain e-mail address.
	ErrInvalidEmail = errors.New("must be a valid e-mail address")
	// ErrEmptyOrder is returned for an order without items.
	ErrEmptyOrder = errors.New("an order needs at least one item")
	// ErrBadQuantity is returned for an item quantity below one.
	ErrBadQuantity = errors.New("quantity must be at least 1")
	// ErrDuplicateProduct is returned when an order lists a product twice.
	ErrDuplicateProduct = errors.New("product is listed more than once")
)

// NormalizeEmail returns the form in which e-mail addresses are stored and compared: ASCII
// white space trimmed and ASCII letters lower-cased. Every other character is left as it is,
// for the rule that addresses are ASCII to refuse: strings.ToLower would turn the Kelvin sign
// into a "k", and strings.TrimSpace would drop a no-break space, making another address of one
// that no account may have.
func NormalizeEmail(email string) string {
	email = strings.Trim(email, " \t\n\v\f\r")
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, email)
}

// ValidateEmail checks that email is a bare address ("a@b.example", no display name) of at
// most MaxEmailLength characters.
func ValidateEmail(email string) error {
	switch {
	case email == "":
		return fmt.Errorf("%w, not empty", ErrInvalidEmail)
	case utf8.RuneCountInString(email) > MaxEmailLength:
		return fmt.Errorf("%w of at most %d characters", ErrInvalidEmail, MaxEmailLength)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return ErrInvalidEmail
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return ErrInvalidEmail
	}
	return nil
}

// Blank reports whether s shows nothing: each of its characters is white space, a control
// character or one that is not drawn: a format character (a zero-width space or joiner, a
// direction mark, a byte-order mark) other than the prepended concatenation marks, which are,
// another default-ignorable code point (a Hangul filler), a variation selector, or the blank
// braille pattern. The empty string is blank.
func Blank(s string) bool { return strings.IndexFunc(s, visible) < 0 }

func visible(r rune) bool {
	switch {
	case unicode.IsSpace(r), unicode.IsControl(r), r == '\u2800':
		return false
	case unicode.Is(unicode.Prepended_Concatenation_Mark, r):
		return true
	}
	return !unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// ValidateLength checks that s has between min and max characters (runes).
func ValidateLength(s string, min, max int) error {
	n := utf8.RuneCountInString(s)
	switch {
	case n < min && min == 1:
		return errors.New("must not be empty")
	case n < min:
		return fmt.Errorf("must have at least %d characters", min)
	case n > max:
		return fmt.Errorf("must have at most %d characters", max)
	}
	return nil
}

// ValidatePassword checks a new password's length.
func ValidatePassword(p string) error {
	if utf8.RuneCountInString(p) < MinPasswordLength {
		return fmt.Errorf("must have at least %d characters", MinPasswordLength)
	}
	if len(p) > MaxPasswordBytes {
		return fmt.Errorf("must have at most %d bytes", MaxPasswordBytes)
	}
	return nil
}

// Item is a requested order line before prices are known.
type Item struct {
	ProductID int
	Quantity  int
}

// ItemError tells which item of an order is invalid.
type ItemError struct {
	Index int
	Err   error
}

// Error implements error.
func (e *ItemError) Error() string { return fmt.Sprintf("item %d: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *ItemError) Unwrap() error { return e.Err }

// ValidateItems checks an order's requested items: at least one, each quantity at least 1,
// and no product twice. Every problem is returned, joined (errors.Join): ErrEmptyOrder, or an
// *ItemError for each item at fault, in the items' order, so that an answer can name them
// all. The upper bounds (100 items, a quantity of 1,000,000) are the contract's
// (openapi.yaml, OrderCreate), which the API checks before its handlers run.
func ValidateItems(items []Item) error {
	if len(items) == 0 {
		return ErrEmptyOrder
	}
	var errs []error
	seen := make(map[int]struct{}, len(items))
	for i, it := range items {
		if it.Quantity < 1 {
			errs = append(errs, &ItemError{Index: i, Err: ErrBadQuantity})
		}
		if _, dup := seen[it.ProductID]; dup {
			errs = append(errs, &ItemError{Index: i, Err: ErrDuplicateProduct})
		}
		seen[it.ProductID] = struct{}{}
	}
	return errors.Join(errs...)
}
