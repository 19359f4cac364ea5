package consent

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

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
