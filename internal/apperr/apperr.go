// Package apperr defines the errors the API shows to clients: each carries a
// stable code (returned in extensions.code) and a message safe to display.
// Anything that is not an *Error is an internal fault and gets masked.
package apperr

import (
	"errors"
	"fmt"
	"time"
)

// Code is a stable, documented error code.
type Code string

// The codes clients can rely on.
const (
	BadUserInput    Code = "BAD_USER_INPUT"
	Unauthenticated Code = "UNAUTHENTICATED"
	Forbidden       Code = "FORBIDDEN"
	NotFound        Code = "NOT_FOUND"
	Conflict        Code = "CONFLICT"
	RateLimited     Code = "RATE_LIMITED"
	NeedsEmail      Code = "NEEDS_EMAIL"
	// NeedsVerifiedEmail: an address was given but is not verified yet.
	NeedsVerifiedEmail Code = "NEEDS_VERIFIED_EMAIL"
	BudgetExhausted    Code = "BUDGET_EXHAUSTED"
	Internal           Code = "INTERNAL"
)

// Error is a client-facing error.
type Error struct {
	Code    Code
	Message string
	// Field names the input field at fault, e.g. "input.username".
	Field string
	// RetryAfter hints when a rate-limited call may be repeated.
	RetryAfter time.Duration
	// Err is the underlying cause, logged but never shown.
	Err error
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Field)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error with a code and message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid reports bad input in a named field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: BadUserInput, Field: field, Message: fmt.Sprintf(format, args...)}
}

// As extracts an *Error from err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// CodeOf returns the code of err, or Internal for anything unexpected.
func CodeOf(err error) Code {
	if e, ok := As(err); ok {
		return e.Code
	}
	return Internal
}
