package domain

import (
	"errors"
	"testing"

	"github.com/shopspring/decimal"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestValidatePrice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want error
	}{
		{"0", nil},
		{"0.1", nil},
		{"99.99", nil},
		{"10.50", nil},
		{"9999999999.99", nil},
		{"-0.01", ErrNegativeMoney},
		{"0.001", ErrMoneyPrecision},
		{"1.999", ErrMoneyPrecision},
		{"10000000000", ErrMoneyTooLarge},
	}
	for _, tt := range tests {
		if err := ValidatePrice(d(tt.in)); !errors.Is(err, tt.want) {
			t.Errorf("ValidatePrice(%s) = %v, want %v", tt.in, err, tt.want)
		}
	}
}

func TestTotal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lines []Line
		want  string
	}{
		{"empty", nil, "0"},
		{"tenths", []Line{{d("0.10"), 1}, {d("0.20"), 1}}, "0.30"},
		{"thirds", []Line{{d("33.33"), 3}}, "99.99"},
		{"many cents", []Line{{d("0.01"), 1000}, {d("19.99"), 7}}, "149.93"},
	}
	for _, tt := range tests {
		got, err := Total(tt.lines)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !got.Equal(d(tt.want)) {
			t.Errorf("%s: Total = %s, want %s", tt.name, got, tt.want)
		}
	}
	if _, err := Total([]Line{{d("9999999999.99"), 2}}); !errors.Is(err, ErrMoneyTooLarge) {
		t.Errorf("overflowing total: got %v, want ErrMoneyTooLarge", err)
	}
}
