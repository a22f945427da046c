package events

import (
	"bytes"
	"fmt"

	"github.com/shopspring/decimal"
)

// Money is an amount of money with at most two decimals. In JSON it is a number written with
// exactly two decimals (99.99, 10.00), never a string, as in the HTTP API.
type Money struct{ decimal.Decimal }

// maxExponent bounds the decimal exponent of an amount in JSON (1e40, 1e-40); every real
// amount is far inside it.
const maxExponent = 40

// NewMoney wraps d as Money.
func NewMoney(d decimal.Decimal) Money { return Money{d} }

// MarshalJSON writes m as an unquoted number with two decimals. An amount with more than two
// decimals is an error rather than being rounded silently.
func (m Money) MarshalJSON() ([]byte, error) {
	if !m.Equal(m.Round(2)) {
		return nil, fmt.Errorf("money %s has more than two decimals", m.String())
	}
	return []byte(m.StringFixed(2)), nil
}

// UnmarshalJSON reads a JSON number with at most two decimals; strings, null and finer
// amounts are rejected.
func (m *Money) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] == '"' || bytes.Equal(b, []byte("null")) {
		return fmt.Errorf("money must be a JSON number, got %s", b)
	}
	d, err := decimal.NewFromString(string(b))
	if err != nil {
		return fmt.Errorf("money: %w", err)
	}
	// Checked before any arithmetic: rounding 1e999999999 computes a power of ten with a
	// billion digits.
	if e := d.Exponent(); e > maxExponent || e < -maxExponent {
		return fmt.Errorf("money %s is out of range", b)
	}
	if !d.Equal(d.Round(2)) {
		return fmt.Errorf("money %s has more than two decimals", b)
	}
	m.Decimal = d
	return nil
}
