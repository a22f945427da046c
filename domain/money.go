package domain

import (
	"errors"
	"fmt"

	"github.com/shopspring/decimal"
)

// MoneyScale is the number of decimal places money carries.
const MoneyScale = 2

// MaxMoney is the largest amount the database stores (numeric(12,2)).
var MaxMoney = decimal.RequireFromString("9999999999.99")

var (
	// ErrNegativeMoney is returned for an amount below zero.
	ErrNegativeMoney = errors.New("amount must not be negative")
	// ErrMoneyPrecision is returned for an amount with more than two decimals.
	ErrMoneyPrecision = errors.New("amount must have at most two decimals")
	// ErrMoneyTooLarge is returned for an amount above MaxMoney.
	ErrMoneyTooLarge = errors.New("amount is too large")
)

// ValidatePrice checks that d is a storable price: not negative, at most two decimals,
// at most MaxMoney.
func ValidatePrice(d decimal.Decimal) error {
	if d.IsNegative() {
		return ErrNegativeMoney
	}
	if !d.Equal(d.Truncate(MoneyScale)) {
		return ErrMoneyPrecision
	}
	if d.GreaterThan(MaxMoney) {
		return ErrMoneyTooLarge
	}
	return nil
}

// Line is one line of an order: a unit price times a quantity.
type Line struct {
	Price    decimal.Decimal
	Quantity int
}

// Total returns the exact sum of price times quantity over lines. It fails when the sum
// exceeds MaxMoney.
func Total(lines []Line) (decimal.Decimal, error) {
	sum := decimal.Zero
	for _, l := range lines {
		sum = sum.Add(l.Price.Mul(decimal.NewFromInt(int64(l.Quantity))))
	}
	if sum.GreaterThan(MaxMoney) {
		return decimal.Zero, fmt.Errorf("order total %s: %w", sum.StringFixed(MoneyScale), ErrMoneyTooLarge)
	}
	return sum, nil
}
