package domain

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidateEmail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		ok   bool
		says string // in the error, when not ok
	}{
		{"ann@example.com", true, ""},
		{"a.b+c@sub.example.org", true, ""},
		{"", false, "must be a valid e-mail address, not empty"},
		{"ann", false, "must be a valid e-mail address"},
		{"ann@", false, "must be a valid e-mail address"},
		{"@example.com", false, "must be a valid e-mail address"},
		{"Ann <ann@example.com>", false, "must be a valid e-mail address"},
		{"ann@example.com ", false, "must be a valid e-mail address"},
		{strings.Repeat("a", 90) + "@example.com", false, "must be a valid e-mail address of at most 100 characters"},
	}
	for _, tt := range tests {
		err := ValidateEmail(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateEmail(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrInvalidEmail) || err.Error() != tt.says) {
			t.Errorf("ValidateEmail(%q) = %v, want ErrInvalidEmail saying %q", tt.in, err, tt.says)
		}
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"  Ann@Example.COM ":      "ann@example.com",
		"\tann@example.com\r\n":   "ann@example.com",
		"\u212Aate@example.com":   "\u212Aate@example.com", // the Kelvin sign, which Unicode lower-cases to "k"
		"kate@example.com\u00a0":  "kate@example.com\u00a0",
		"\u3000kate@example.com":  "\u3000kate@example.com",
		"M\u00dcLLER@EXAMPLE.COM": "m\u00dcller@example.com",
		"\u0130nci@example.com":   "\u0130nci@example.com", // a dotted capital I, which Unicode lower-cases to "i" and a dot
	}
	for in, want := range tests {
		if got := NormalizeEmail(in); got != want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateLength(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		min, max int
		ok       bool
	}{
		{"", 1, 100, false},
		{"a", 1, 100, true},
		{strings.Repeat("é", 100), 1, 100, true},
		{strings.Repeat("é", 101), 1, 100, false},
		{"", 0, 500, true},
	}
	for _, tt := range tests {
		if err := ValidateLength(tt.in, tt.min, tt.max); (err == nil) != tt.ok {
			t.Errorf("ValidateLength(%q, %d, %d) = %v, want ok=%v", tt.in, tt.min, tt.max, err, tt.ok)
		}
	}
}

func TestBlank(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"":                   true,
		" \t\n\u00a0\u3000":  true,  // white space, ASCII and not
		"\u200b":             true,  // a zero-width space
		"\u200d\u2060\ufeff": true,  // a zero-width joiner, a word joiner, a byte-order mark
		"\u200e \u202e":      true,  // direction marks
		"\x01\x7f":           true,  // control characters
		"\u3164\u115f\uffa0": true,  // Hangul fillers
		"\u2800":             true,  // the blank braille pattern
		"\u034f\ufe0f":       true,  // a combining grapheme joiner, a variation selector
		"\u0600":             false, // an Arabic number sign: a format character that is drawn
		"a":                  false, // one visible letter is enough
		"\u200ba\u200b":      false,
		"é":                  false,
		"\U0001F600":         false, // an emoji
		"-":                  false,
	} {
		if got := Blank(in); got != want {
			t.Errorf("Blank(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestValidatePassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{"12345", false},
		{"123456", true},
		{strings.Repeat("x", 72), true},
		{strings.Repeat("x", 73), false},
	}
	for _, tt := range tests {
		if err := ValidatePassword(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidatePassword(len %d) = %v, want ok=%v", len(tt.in), err, tt.ok)
		}
	}
}

func TestValidateItems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		items []Item
		want  error
		index int
	}{
		{"ok", []Item{{1, 1}, {2, 5}}, nil, 0},
		{"empty", nil, ErrEmptyOrder, -1},
		{"zero quantity", []Item{{1, 1}, {2, 0}}, ErrBadQuantity, 1},
		{"negative quantity", []Item{{1, -3}}, ErrBadQuantity, 0},
		{"duplicate", []Item{{1, 1}, {2, 1}, {1, 2}}, ErrDuplicateProduct, 2},
	}
	for _, tt := range tests {
		err := ValidateItems(tt.items)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
			continue
		}
		var ie *ItemError
		if tt.index >= 0 && tt.want != nil && (!errors.As(err, &ie) || ie.Index != tt.index) {
			t.Errorf("%s: got %v, want item %d", tt.name, err, tt.index)
		}
	}
}

// TestValidateItemsNamesEveryItem checks that every item at fault is returned, not only the
// first, with an item that breaks both rules named for each.
func TestValidateItemsNamesEveryItem(t *testing.T) {
	t.Parallel()
	err := ValidateItems([]Item{{1, 0}, {2, 1}, {1, 1}, {2, -1}})
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("ValidateItems = %v, want every problem joined", err)
	}
	type fault struct {
		index int
		err   error
	}
	var got []fault
	for _, e := range joined.Unwrap() {
		var ie *ItemError
		if !errors.As(e, &ie) {
			t.Fatalf("%v is not an *ItemError", e)
		}
		got = append(got, fault{ie.Index, ie.Err})
	}
	want := []fault{{0, ErrBadQuantity}, {2, ErrDuplicateProduct}, {3, ErrBadQuantity}, {3, ErrDuplicateProduct}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
