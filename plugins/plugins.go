// Package plugins is the processor SDK. A processor is a third party (a
// newsletter, a survey tool, any HTTP service) that receives a user's data
// only while the user's consent for its purpose is in force.
//
// A processor package registers a Factory under a type name in its init
// function (the database/sql driver pattern); the operator then configures
// instances of that type in the --config file:
//
//	processors:
//	  - name: news
//	    type: mailchimp
//	    purpose: newsletter
//	    fields: [user.contact.email]
//	    settings: {apiKey: ..., listId: ...}
//
// The core never calls a processor from a request: consent changes write
// work items to an outbox, and a dispatcher calls Deliver and Forget, at
// least once, with the same idempotency key (Request.ID) on every retry.
// See docs/plugins.md.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"
)

// Manifest describes a processor type.
type Manifest struct {
	// Type is the name instances refer to in the config ("mailchimp").
	Type string
	// Purpose is the purpose an instance serves when the config names none.
	Purpose string
	// DataCategories are the categories the processor can use; an instance
	// without fields gets all of them (and never more than its purpose allows).
	DataCategories []string
	// Requires are categories an instance cannot work without (e.g.
	// user.contact.email for a newsletter): delivery waits until the user
	// has given them, and the consent shows NEEDS_EMAIL (or
	// NEEDS_VERIFIED_EMAIL) meanwhile.
	Requires []string
	// RequiresVerifiedEmail is kept for plugins built against earlier
	// versions and has no effect: the core gives no processor an unverified
	// address, whatever its manifest says (the consent shows
	// NEEDS_VERIFIED_EMAIL until the user verified it).
	//
	// Deprecated: every processor now waits for a verified email.
	RequiresVerifiedEmail bool
	Description           string
	// Actions are what a user may ask an instance to do for them (e.g.
	// resendConfirmation); the processor runs them by implementing Actor.
	Actions []Action
}

// Signer signs outgoing payloads with the service's Ed25519 key set (the
// public keys are at /.well-known/jwks.json).
type Signer interface {
	Sign(ctx context.Context, msg []byte) (kid string, sig []byte, err error)
}

// Env is what the core gives a processor instance.
type Env struct {
	// Name is the configured instance name.
	Name    string
	Purpose string
	// Fields are the categories this instance receives.
	Fields []string
	// Settings are the instance's settings from the config file.
	Settings map[string]any
	Signer   Signer
	// HTTPClient is for calls to the provider (with a timeout).
	HTTPClient *http.Client
	// State is this instance's own storage, kept by the core, for
	// processors that remember something per user (e.g. a confirmation).
	State State
	// PublicURL is how users reach this server (for links in mail).
	PublicURL string
	Logger    *slog.Logger
	// Links records what the processor reports about a user outside
	// Deliver and Forget (see LinkStatus); users see it in their account.
	Links LinkStore
}

// State is a processor instance's private key-value storage: small values
// under string keys, kept in the server's store (whichever adapter runs)
// and shared by every replica. Each call is atomic by itself; a processor
// that needs an index (a token to a subject) keeps it as a second key.
type State interface {
	// Get returns the value under key; ok is false when there is none.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Put stores value under key, replacing any earlier value.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key; removing an absent key is not an error.
	Delete(ctx context.Context, key string) error
}

// Request is one delivery or forget. The same Request (ID included) is
// repeated after failures, so the effect at the provider must be the same
// however often it arrives: send ID as the idempotency key, or use a
// natural key such as the subject.
type Request struct {
	// ID is the idempotency key of this work item.
	ID string
	// Subject is a pseudonym of the user for this processor (an HMAC of the
	// user id under a key of its own): stable, and different per processor.
	Subject string
	Purpose string
	// Fields holds the permitted categories the user has given (absent ones
	// are missing), e.g. "user.contact.email": "ann@example.org". Empty for
	// a forget.
	Fields map[string]string
	// Ref is what an earlier Deliver returned as Result.Ref (the provider's
	// id for the user), or "".
	Ref string
	// Erase is set on a forget caused by account erasure (delete for good),
	// unset on a forget caused by withdrawal (unsubscribe).
	Erase bool
	// Attempt counts from 1.
	Attempt int
}

// Result is what a successful Deliver reports.
type Result struct {
	// Ref is remembered and passed to later requests for this user. It must
	// not be personal data in clear (a provider id or a hash is fine).
	Ref string
	// Link, if set, is the user's link status after this delivery. Without
	// it the core records LinkActive; after a Forget it records
	// LinkUnsubscribed, and LinkFailed when the work item goes DEAD.
	Link *LinkStatus
}

// Processor is a configured processor instance.
type Processor interface {
	// Deliver creates or updates the user at the provider with Fields.
	Deliver(ctx context.Context, r Request) (Result, error)
	// Forget removes the user at the provider (unsubscribe, or delete for
	// good when r.Erase). Forgetting an unknown user is a success.
	Forget(ctx context.Context, r Request) error
}

// Routed is implemented by processors that serve HTTP endpoints (e.g. a
// confirmation link). They are mounted under /plugins/{name}/.
type Routed interface {
	Handler() http.Handler
}

// Factory builds an instance; it returns an error for bad settings.
type Factory func(env Env) (Processor, error)

type entry struct {
	m Manifest
	f Factory
}

var (
	mu       sync.RWMutex
	registry = map[string]entry{}
)

// Register makes a processor type available. It panics when the type is
// registered twice or the manifest is incomplete, like sql.Register.
func Register(m Manifest, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if m.Type == "" || f == nil || len(m.DataCategories) == 0 {
		panic("plugins: Register needs a type, data categories and a factory")
	}
	if _, dup := registry[m.Type]; dup {
		panic("plugins: Register called twice for type " + m.Type)
	}
	registry[m.Type] = entry{m: m, f: f}
}

// Lookup returns a registered type.
func Lookup(typ string) (Manifest, Factory, bool) {
	mu.RLock()
	defer mu.RUnlock()
	e, ok := registry[typ]
	return e.m, e.f, ok
}

// Types lists the registered type names, sorted.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the item goes to DEAD without retries.
func Permanent(err error) error { return &permanentError{err: err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError asks for the next attempt no earlier than After.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return fmt.Sprintf("%v (retry after %s)", e.err, e.after) }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err with the provider's requested wait (e.g. 429 with
// Retry-After).
func RetryAfter(d time.Duration, err error) error { return &retryAfterError{err: err, after: d} }

// RetryAfterOf returns the wait requested by err, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}

// HTTPStatusError classifies an unexpected HTTP answer the usual way: 4xx
// other than 408 and 429 is permanent, everything else is retried, and a
// Retry-After header is honoured.
func HTTPStatusError(resp *http.Response, what string) error {
	err := fmt.Errorf("%s: HTTP %d", what, resp.StatusCode)
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After")); ok {
		return RetryAfter(d, err)
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 408 && resp.StatusCode != 429 {
		return Permanent(err)
	}
	return err
}

func parseRetryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// StringSetting reads a string setting; required ones must be non-empty.
//
// Deprecated: use DecodeSettings, which also takes numbers, booleans,
// durations and lists. Kept for plugins built against SDK 0.0.
func StringSetting(env Env, key string, required bool) (string, error) {
	v, ok := env.Settings[key]
	if !ok || v == nil {
		if required {
			return "", fmt.Errorf("settings.%s is required", key)
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("settings.%s must be a string", key)
	}
	if required && s == "" {
		return "", fmt.Errorf("settings.%s must not be empty", key)
	}
	return s, nil
}

// CheckSettings refuses settings keys outside known (the core-owned
// DescriptionSetting is always accepted).
//
// Deprecated: use DecodeSettings, which refuses unknown keys itself. Kept
// for plugins built against SDK 0.0.
func CheckSettings(env Env, known ...string) error {
	for k := range env.Settings {
		if !slices.Contains(known, k) && !slices.Contains(coreSettings, k) {
			return fmt.Errorf("settings.%s is not a setting of this processor (known: %v)", k, known)
		}
	}
	return nil
}
