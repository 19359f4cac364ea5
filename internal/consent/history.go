package consent

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

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
	st, err := s.Load(ctx, userID)
	if err != nil {
		return nil, err
	}
	all := SortedEvents(st)
	p := &Page{TotalCount: len(all), Events: []Event{}}
	for _, e := range all {
		switch {
		case e.Seq <= from:
			p.HasPreviousPage = true
		case len(p.Events) < n:
			p.Events = append(p.Events, e)
		default:
			p.HasNextPage = true
		}
	}
	return p, nil
}

// ArchiveCollection keeps the consent (ledger and final state, laid out as
// Stored) of erased accounts, keyed by subject pseudonym: pseudonymous,
// signed proof of their choices that VerifyLedger still checks.
const ArchiveCollection = "consent_archive"

// ArchiveLedger copies the user's ledger into the archive under the subject
// pseudonym, so that the proof survives when the account is erased. Call it
// before the user document is deleted; it is idempotent.
func (s *Service) ArchiveLedger(ctx context.Context, userID string) error {
	st, err := s.Load(ctx, userID)
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
	_, err = s.opts.DB.Collection(ArchiveCollection).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: subject}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "head", Value: st.Head}, {Key: "headHash", Value: st.HeadHash},
			{Key: "state", Value: st.State}, {Key: "events", Value: st.Events}, {Key: "archivedAt", Value: s.now()},
		}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("archive consent ledger: %w", err)
	}
	return nil
}

// ExportSection is the consent part of a user's data export (an
// export.Section): the effective consent per purpose, the whole ledger
// with its signed receipts, and whether the ledger is intact.
func (s *Service) ExportSection(ctx context.Context, userID string) (any, error) {
	st, err := s.Load(ctx, userID)
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
	for _, e := range SortedEvents(st) {
		ledger = append(ledger, eventOut{
			Sequence: e.Seq, Purpose: e.Purpose, Action: e.Action, PolicyVersion: e.PolicyVersion, At: e.At,
			Method: e.Method, ReceiptID: e.ReceiptID, Receipt: e.Receipt, PreviousHash: e.PrevHash, Hash: e.Hash,
		})
	}
	intact := VerifyLedger(ctx, subject, st, s.receiptClaims) == nil
	return map[string]any{
		"subjectPseudonym": subject,
		"policyVersion":    rules.Current().Version,
		"consents":         consents,
		"ledger":           ledger,
		"ledgerIntact":     intact,
	}, nil
}
