package api

import (
	"io"

	"github.com/go-faster/jx"
	"github.com/ogen-go/ogen/validate"

	"orderflow/api/oas"
)

// bodyCheck returns the field errors of a request body of its operation that the contract's
// validation left unsaid, or nil when the body does not decode.
type bodyCheck func(body []byte) []oas.FieldError

// bodyChecks are the field checks of every operation with a request body, by operationId,
// which its handler runs too: a body that the contract refuses never reaches the handler, and
// its answer names the fields at fault by both. An operation whose handler checks no field
// beyond the contract has nil. TestEveryBodyHasItsChecks fails for an operation left out.
// Checks that read the database (an e-mail address taken, a product that does not exist) are
// the handlers' alone.
var bodyChecks = map[string]bodyCheck{
	"login":         checksOf(loginChecks),
	"createUser":    checksOf(createUserChecks),
	"updateUser":    checksOf(updateUserChecks),
	"createProduct": checksOf(productChecks),
	"updateProduct": checksOf(productChecks),
	"createOrder":   checksOf(createOrderChecks),
	// Its one field, status, the handler checks as the contract's enumeration does
	// (domain.ParseStatus): nothing to add.
	"updateOrderStatus": nil,
}

// checksOf returns the bodyCheck that decodes a body as the request type *T, without the
// contract's validation, and runs check on it.
func checksOf[T any, P interface {
	*T
	Decode(d *jx.Decoder) error
}](check func(P) fieldChecks) bodyCheck {
	return func(body []byte) []oas.FieldError {
		req := P(new(T))
		d := jx.DecodeBytes(body)
		var out []oas.FieldError
		switch err := req.Decode(d); err.(type) {
		case nil:
		case *validate.Error:
			// Required members of the body itself are missing (a nested object's would come
			// wrapped): every member sent was decoded, but the decoder stopped before the
			// contract's other rules, which are applied here.
			if v, ok := any(req).(interface{ Validate() error }); ok {
				if valErr, ok := v.Validate().(*validate.Error); ok {
					out = fieldErrors("", valErr, out)
				}
			}
		default:
			return nil
		}
		if d.Skip() != io.EOF {
			return nil
		}
		return append(out, check(req)...)
	}
}

// withBodyChecks adds to fields, the errors of the contract's validation of a body of the
// operation op, the errors of the operation's bodyCheck for the fields that they do not name
// (one error per field, the contract's first), in the order of the contract's fields. An error
// about a value inside one that the contract refuses whole is left out: the contract does not
// look into an array of too many items either, and such an array is bounded only by the
// body's size, as the errors about its items would be.
func withBodyChecks(op string, body []byte, fields []oas.FieldError) []oas.FieldError {
	check := bodyChecks[op]
	if check == nil {
		return fields
	}
	named := make(map[string]bool, len(fields))
	for _, f := range fields {
		named[f.Field] = true
	}
	for _, f := range check(body) {
		if !named[f.Field] && !inNamed(f.Field, named) {
			named[f.Field] = true
			fields = append(fields, f)
		}
	}
	sortAsContract(op, fields)
	return fields
}

// inNamed reports whether the value at path lies inside a value whose path is in named.
func inNamed(path string, named map[string]bool) bool {
	for i := 1; i < len(path); i++ {
		if (path[i] == '.' || path[i] == '[') && named[path[:i]] {
			return true
		}
	}
	return false
}
