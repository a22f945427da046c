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

// The errors of an amount, said as the rule it breaks, as a field's error says it.
var (
	// ErrNegativeMoney is returned for an amount below zero.
	ErrNegativeMoney = errors.New("must not be negative")
	// ErrMoneyPrecision is returned for an amount with more than two decimals.
	ErrMoneyPrecision = errors.New("must have at most two decimals")
	// ErrMoneyTooLarge is returned for an amount above MaxMoney.
	ErrMoneyTooLarge = errors.New("must be at most " + MaxMoney.StringFixed(MoneyScale))
)

// TotalTooLargeError is returned by Total for lines whose total is above MaxMoney. It is
// ErrMoneyTooLarge.
type TotalTooLargeError struct {
	Total decimal.Decimal
}

func (e *TotalTooLargeError) Error() string {
	return fmt.Sprintf("the order's total would be %s, above the largest amount, %s",
		e.Total.StringFixed(MoneyScale), MaxMoney.StringFixed(MoneyScale))
}

func (e *TotalTooLargeError) Unwrap() error { return ErrMoneyTooLarge }

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
		return decimal.Zero, &TotalTooLargeError{Total: sum}
	}
	return sum, nil
}
