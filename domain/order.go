// Package domain holds orderflow's business rules as plain Go: the order state machine,
// exact money arithmetic, and the rules of the fields of users, products and orders (e-mail
// addresses, lengths, passwords, roles, order items). It knows nothing of storage or
// transport.
package domain

import (
	"errors"
	"fmt"
	"strings"
)

// Status is the lifecycle state of an order.
type Status string

// The statuses an order goes through.
const (
	StatusPending    Status = "pending"
	StatusProcessing Status = "processing"
	StatusCompleted  Status = "completed"
	StatusExpired    Status = "expired"
)

// Statuses lists every status in lifecycle order.
var Statuses = []Status{StatusPending, StatusProcessing, StatusCompleted, StatusExpired}

var (
	// ErrUnknownStatus is returned for a status that is not one of Statuses.
	ErrUnknownStatus = errors.New("unknown order status")
	// ErrTransitionNotAllowed is returned for a change the state machine forbids.
	ErrTransitionNotAllowed = errors.New("order status transition not allowed")
	// ErrSameStatus is returned when an order already has the requested status; callers
	// treat it as a no-op, not a failure.
	ErrSameStatus = errors.New("order already has this status")
)

// transitions maps each status to the statuses it may move to.
var transitions = map[Status][]Status{
	StatusPending:    {StatusProcessing, StatusExpired},
	StatusProcessing: {StatusCompleted, StatusExpired},
	StatusCompleted:  nil,
	StatusExpired:    nil,
}

// ParseStatus returns s as a Status, or ErrUnknownStatus.
func ParseStatus(s string) (Status, error) {
	st := Status(s)
	if !st.Valid() {
		return "", fmt.Errorf("%w: %q", ErrUnknownStatus, s)
	}
	return st, nil
}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// HoldsStock reports whether an order in status s still holds its reserved stock, which
// deleting the order must therefore release. A completed order consumed its stock; an
// expired one released it when it expired.
func (s Status) HoldsStock() bool {
	return s == StatusPending || s == StatusProcessing
}

// CanTransition reports whether an order may move from one status to another: nil when
// allowed, ErrSameStatus when from equals to (a no-op), ErrUnknownStatus when either is
// not a status, and ErrTransitionNotAllowed otherwise.
func CanTransition(from, to Status) error {
	if !from.Valid() {
		return fmt.Errorf("%w: %q", ErrUnknownStatus, from)
	}
	if !to.Valid() {
		return fmt.Errorf("%w: %q", ErrUnknownStatus, to)
	}
	if from == to {
		return ErrSameStatus
	}
	next := transitions[from]
	for _, n := range next {
		if n == to {
			return nil
		}
	}
	// Said with where the order may go instead, which is what the caller can change.
	if len(next) == 0 {
		return fmt.Errorf("%w: %s -> %s (%s is final)", ErrTransitionNotAllowed, from, to, from)
	}
	names := make([]string, len(next))
	for i, n := range next {
		names[i] = string(n)
	}
	return fmt.Errorf("%w: %s -> %s (from %s: %s)", ErrTransitionNotAllowed, from, to, from, strings.Join(names, " or "))
}
