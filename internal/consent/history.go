package consent

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/internal/apperr"
)

// Page sizes of the consent history.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// Page is a slice of a user's ledger, oldest event first.
type Page struct {
	Events          []Event
	HasNextPage     bool
	HasPreviousPage bool
	TotalCount      int
}

const cursorPrefix = "consent-event:"

// Cursor is the opaque cursor of the event with sequence number seq.
func Cursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(seq, 10)))
}

func parseCursor(c string) (int64, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil && n >= 0
}

// History pages through a user's ledger in order (Relay forward
// pagination): first events after the cursor after (nil: from the start).
func (s *Service) History(ctx context.Context, userID string, first *int, after *string) (*Page, error) {
	n := DefaultPageSize
	if first != nil {
		n = *first
	}
	if n < 0 || n > MaxPageSize {
		return nil, apperr.Invalid("first", "must be between 0 and %d", MaxPageSize)
	}
	var from int64
	if after != nil {
		seq, ok := parseCursor(*after)
		if !ok {
			return nil, apperr.Invalid("after", "not a cursor of this list")
		}
		from = seq
	}
	st, err := s.loadState(ctx, userID, false)
	if err != nil {
		return nil, err
	}
	// Only the page is read: a user with a long ledger pages as fast as a
	// new one. The head says how many events there are.
	p := &Page{TotalCount: int(st.Head), HasPreviousPage: from > 0 && st.Head > 0, Events: []Event{}}
	if n == 0 || from >= st.Head {
		p.HasNextPage = from < st.Head && n == 0
		return p, nil
	}
	events, err := s.store.Events(ctx, userID, from, n+1)
	if err != nil {
		return nil, fmt.Errorf("read consent history: %w", err)
	}
	if len(events) > n {
		events, p.HasNextPage = events[:n], true
	}
	p.Events = events
	return p, nil
}

// ArchiveLedger keeps the user's ledger and final state under the subject
// pseudonym, so that the proof survives when the account is erased. Call it
// before the account is deleted. It is idempotent, and an archive already
// holding the whole ledger is left alone (a resumed erasure may find the
// ledger partly deleted by then).
func (s *Service) ArchiveLedger(ctx context.Context, userID string) error {
	st, events, err := s.Ledger(ctx, userID)
	if err != nil {
		return err
	}
	if st.Head == 0 {
		return nil
	}
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return err
	}
	prev, err := s.store.Archived(ctx, subject)
	if err != nil {
		return fmt.Errorf("read consent archive: %w", err)
	}
	if prev != nil && prev.State.Head >= st.Head {
		return nil
	}
	st.Erasing = false
	if err := s.store.Archive(ctx, Archived{Subject: subject, State: *st, Events: events, ArchivedAt: s.now()}); err != nil {
		return fmt.Errorf("archive consent ledger: %w", err)
	}
	return nil
}

// ExportSection is the consent part of a user's data export (an
// export.Section): the effective consent per purpose, the whole ledger
// with its signed receipts, and whether the ledger is intact.
func (s *Service) ExportSection(ctx context.Context, userID string) (any, error) {
	st, events, err := s.Ledger(ctx, userID)
	if err != nil {
		return nil, err
	}
	subject, err := s.Pseudonym(ctx, userID)
	if err != nil {
		return nil, err
	}
	rules := s.Rules()
	type consentOut struct {
		Purpose       string     `json:"purpose"`
		Mechanism     string     `json:"mechanism"`
		Granted       bool       `json:"granted"`
		Explicit      bool       `json:"explicit"`
		NeedsRenewal  bool       `json:"needsRenewal"`
		UpdatedAt     *time.Time `json:"updatedAt"`
		PolicyVersion string     `json:"policyVersion,omitempty"`
		Method        Method     `json:"method,omitempty"`
	}
	type eventOut struct {
		Sequence      int64     `json:"sequence"`
		Purpose       string    `json:"purpose"`
		Action        Action    `json:"action"`
		PolicyVersion string    `json:"policyVersion"`
		At            time.Time `json:"at"`
		Method        Method    `json:"method"`
		ReceiptID     string    `json:"receiptId"`
		Receipt       string    `json:"receipt"`
		PreviousHash  string    `json:"previousHash"`
		Hash          string    `json:"hash"`
	}
	consents := []consentOut{}
	for _, c := range rules.Statuses(st) {
		o := consentOut{Purpose: c.Purpose.ID, Mechanism: string(c.Purpose.Mechanism), Granted: c.Granted, Explicit: c.Explicit, NeedsRenewal: c.NeedsRenewal}
		if c.Last != nil {
			at := c.Last.At
			o.UpdatedAt, o.PolicyVersion, o.Method = &at, c.Last.PolicyVersion, c.Last.Method
		}
		consents = append(consents, o)
	}
	ledger := []eventOut{}
	for _, e := range events {
		ledger = append(ledger, eventOut{
			Sequence: e.Seq, Purpose: e.Purpose, Action: e.Action, PolicyVersion: e.PolicyVersion, At: e.At,
			Method: e.Method, ReceiptID: e.ReceiptID, Receipt: e.Receipt, PreviousHash: e.PrevHash, Hash: e.Hash,
		})
	}
	intact := VerifyLedger(ctx, subject, st, events, s.receiptClaims) == nil
	return map[string]any{
		"subjectPseudonym": subject,
		"policyVersion":    rules.Current().Version,
		"consents":         consents,
		"ledger":           ledger,
		"ledgerIntact":     intact,
	}, nil
}
