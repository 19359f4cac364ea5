package mail

import (
	"errors"
	"fmt"
	"net/textproto"
)

// ErrInvalidMessage is wrapped by every error about a message that can
// never be sent as it is (header injection, bad address, missing body).
// Such errors are permanent and are returned before any connection is made.
var ErrInvalidMessage = errors.New("invalid message")

// Error is the error returned by Send. It wraps the cause: a
// *textproto.Error for an SMTP reply, a network error, a context error or
// ErrInvalidMessage.
type Error struct {
	// Op is the step that failed: "config", "validate", "dial", "tls", "greeting",
	// "ehlo", "starttls", "auth", "mail", "rcpt" or "data".
	Op string
	// Code is the SMTP reply code, or 0 when the server did not reply.
	Code int
	// Permanent reports that retrying the same message cannot succeed:
	// a 5xx reply or an invalid message.
	Permanent bool
	Err       error
}

func (e *Error) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("mail: %s: %s failure: %v", e.Op, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err says the message cannot be delivered
// however often it is retried: the server answered with a 5xx reply, or the
// message itself is invalid. Everything else — 4xx replies, network and
// TLS failures, timeouts, a server that stopped offering STARTTLS — is
// transient and worth retrying with backoff. IsPermanent(nil) is false.
func IsPermanent(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Permanent
	}
	if errors.Is(err, ErrInvalidMessage) {
		return true
	}
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return tp.Code >= 500 && tp.Code < 600
	}
	return false
}

func invalidf(format string, args ...any) error {
	return &Error{
		Op:        "validate",
		Permanent: true,
		Err:       fmt.Errorf("%w: "+format, append([]any{ErrInvalidMessage}, args...)...),
	}
}
