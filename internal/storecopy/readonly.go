package storecopy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/envelope"
	"github.com/consentgraph/consentgraph/internal/signing"
	"github.com/consentgraph/consentgraph/internal/work"
)

// The services Verify opens on the stores would, on a store missing what
// they expect, create it (a first signing key, a secret, the first policy
// version). Verification must not change what it checks, so their stores
// refuse every write; a missing record then shows as an error.

var errReadOnly = errors.New("verification writes nothing")

type readOnlySecrets struct{ envelope.SecretStore }

func (s readOnlySecrets) InsertSecret(_ context.Context, r envelope.SecretRecord) (bool, error) {
	return false, fmt.Errorf("the secret %q is missing (%w)", r.Name, errReadOnly)
}

func (s readOnlySecrets) SwapSecret(context.Context, string, []byte, []byte, string) (bool, error) {
	return false, errReadOnly
}

type readOnlySigning struct{ signing.Store }

func (s readOnlySigning) InsertKey(context.Context, signing.KeyRecord) (bool, error) {
	return false, fmt.Errorf("no signing key is stored (%w)", errReadOnly)
}

func (s readOnlySigning) RetireBelow(context.Context, int64, time.Time) error { return errReadOnly }

func (s readOnlySigning) SetExpiry(context.Context, string, time.Time) error { return errReadOnly }

func (s readOnlySigning) SwapPrivateKey(context.Context, string, []byte, []byte, string) (bool, error) {
	return false, errReadOnly
}

// readOnlyConsent lets the consent service start (it stores the first
// policy version unless one exists) and refuses every write.
type readOnlyConsent struct{ consent.Store }

func (s readOnlyConsent) AddFirstPolicy(ctx context.Context, _ consent.PolicyVersion) error {
	vs, err := s.PolicyVersions(ctx)
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		return fmt.Errorf("no policy version is stored (%w)", errReadOnly)
	}
	return nil // the real store would store nothing either
}

func (s readOnlyConsent) RecordChange(context.Context, string, consent.Event, []work.Item) (bool, error) {
	return false, errReadOnly
}

func (s readOnlyConsent) Archive(context.Context, consent.Archived) error { return errReadOnly }

func (s readOnlyConsent) AppendPolicy(context.Context, consent.PolicyVersion) (bool, error) {
	return false, errReadOnly
}

// recountOnly is the source of users of a demographics service that only
// recounts: Recount reads member records, never users.
type recountOnly struct{}

var errNoUsers = errors.New("copy-store reads no users for the aggregates")

func (recountOnly) Subject(context.Context, string) (*demographics.Subject, error) {
	return nil, errNoUsers
}

func (recountOnly) Each(context.Context, func(string, *demographics.Subject) error) error {
	return errNoUsers
}

// levelAtLeast drops log records below min.
type levelAtLeast struct {
	h   slog.Handler
	min slog.Level
}

func (l levelAtLeast) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.h.Enabled(ctx, lv)
}

func (l levelAtLeast) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }

func (l levelAtLeast) WithAttrs(a []slog.Attr) slog.Handler {
	return levelAtLeast{h: l.h.WithAttrs(a), min: l.min}
}

func (l levelAtLeast) WithGroup(name string) slog.Handler {
	return levelAtLeast{h: l.h.WithGroup(name), min: l.min}
}

func joinLines(lines []string) string { return strings.Join(lines, "\n  ") }
