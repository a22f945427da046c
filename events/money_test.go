package events

import (
	"encoding/json"
	"testing"

	"github.com/shopspring/decimal"
)

func TestMoneyMarshal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   decimal.Decimal
		want string
	}{
		{"sum of 0.10 and 0.20", decimal.RequireFromString("0.10").Add(decimal.RequireFromString("0.20")), "0.30"},
		{"two decimals", decimal.RequireFromString("99.99"), "99.99"},
		{"integer", decimal.NewFromInt(10), "10.00"},
		{"one decimal", decimal.RequireFromString("5.5"), "5.50"},
		{"zero", decimal.Zero, "0.00"},
		{"trailing zeros beyond two", decimal.RequireFromString("1.2300"), "1.23"},
		{"large", decimal.RequireFromString("9999999999.99"), "9999999999.99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(NewMoney(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMoneyMarshalRejectsFinerAmounts(t *testing.T) {
	t.Parallel()
	if b, err := json.Marshal(NewMoney(decimal.RequireFromString("1.005"))); err == nil {
		t.Errorf("got %s, want an error", b)
	}
}

func TestMoneyUnmarshal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "99.99", want: "99.99"},
		{in: "10", want: "10.00"},
		{in: "10.00", want: "10.00"},
		{in: "0.3", want: "0.30"},
		{in: "1e2", want: "100.00"},
		{in: "1.234", wantErr: true},
		{in: `"99.99"`, wantErr: true},
		{in: "null", wantErr: true},
		{in: "true", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var m Money
			err := json.Unmarshal([]byte(tt.in), &m)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %s, want an error", m.StringFixed(2))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.StringFixed(2); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMoneyInStruct(t *testing.T) {
	t.Parallel()
	in := Item{ProductID: 1, Quantity: 3, Price: NewMoney(decimal.RequireFromString("19.9"))}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"productId":1,"quantity":3,"price":19.90}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
	var out Item
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !out.Price.Equal(in.Price.Decimal) {
		t.Errorf("price %s, want %s", out.Price, in.Price)
	}
}
