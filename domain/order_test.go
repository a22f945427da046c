package domain

import (
	"errors"
	"testing"
)

func TestCanTransition(t *testing.T) {
	t.Parallel()
	allowed := map[[2]Status]bool{
		{StatusPending, StatusProcessing}:   true,
		{StatusProcessing, StatusCompleted}: true,
		{StatusPending, StatusExpired}:      true,
		{StatusProcessing, StatusExpired}:   true,
	}
	for _, from := range Statuses {
		for _, to := range Statuses {
			err := CanTransition(from, to)
			switch {
			case from == to:
				if !errors.Is(err, ErrSameStatus) {
					t.Errorf("%s -> %s: got %v, want ErrSameStatus", from, to, err)
				}
			case allowed[[2]Status{from, to}]:
				if err != nil {
					t.Errorf("%s -> %s: got %v, want allowed", from, to, err)
				}
			default:
				if !errors.Is(err, ErrTransitionNotAllowed) {
					t.Errorf("%s -> %s: got %v, want ErrTransitionNotAllowed", from, to, err)
				}
			}
		}
	}
}

func TestCanTransitionUnknown(t *testing.T) {
	t.Parallel()
	tests := []struct{ from, to Status }{
		{"", StatusPending},
		{StatusPending, "unknown"},
		{"PENDING", StatusProcessing},
	}
	for _, tt := range tests {
		if err := CanTransition(tt.from, tt.to); !errors.Is(err, ErrUnknownStatus) {
			t.Errorf("%q -> %q: got %v, want ErrUnknownStatus", tt.from, tt.to, err)
		}
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	for _, s := range Statuses {
		got, err := ParseStatus(string(s))
		if err != nil || got != s {
			t.Errorf("ParseStatus(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "Pending", "cancelled"} {
		if _, err := ParseStatus(s); !errors.Is(err, ErrUnknownStatus) {
			t.Errorf("ParseStatus(%q): got %v, want ErrUnknownStatus", s, err)
		}
	}
}

func TestStatusProperties(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s        Status
		holdsStk bool
	}{
		{StatusPending, true},
		{StatusProcessing, true},
		{StatusCompleted, false},
		{StatusExpired, false},
	}
	for _, tt := range tests {
		if got := tt.s.HoldsStock(); got != tt.holdsStk {
			t.Errorf("%s.HoldsStock() = %v", tt.s, got)
		}
	}
}
