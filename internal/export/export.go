// Package export assembles everything held about a user into one signed JSON
// document (the right of access and to data portability). Each domain
// contributes its own section, so the export grows with the service and
// nothing a domain stores can be forgotten by a central list.
package export

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/consentgraph/consentgraph/internal/signing"
)

// Section returns one part of a user's data, JSON-encodable.
type Section func(ctx context.Context, userID string) (any, error)

// Service builds and signs exports.
type Service struct {
	signer   *signing.Keyset
	sections map[string]Section
	now      func() time.Time
}

// New returns an export service signing with keys.
func New(keys *signing.Keyset) *Service {
	return &Service{signer: keys, sections: map[string]Section{}, now: time.Now}
}

// Register adds a named section; call it during start-up only.
func (s *Service) Register(name string, section Section) {
	if _, dup := s.sections[name]; dup {
		panic("export: section registered twice: " + name)
	}
	s.sections[name] = section
}

// Export is a document and a detached JWS over its exact bytes.
type Export struct {
	Document  []byte
	Signature string
}

// Build collects every section for userID and signs the result.
func (s *Service) Build(ctx context.Context, userID string) (*Export, error) {
	names := make([]string, 0, len(s.sections))
	for n := range s.sections {
		names = append(names, n)
	}
	sort.Strings(names)
	doc := map[string]any{
		"format":      "consentgraph-export/1",
		"generatedAt": s.now().UTC().Format(time.RFC3339),
		"subject":     userID,
	}
	for _, n := range names {
		v, err := s.sections[n](ctx, userID)
		if err != nil {
			return nil, fmt.Errorf("export section %s: %w", n, err)
		}
		doc[n] = v
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode export: %w", err)
	}
	sig, err := s.signer.SignDetached(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("sign export: %w", err)
	}
	return &Export{Document: raw, Signature: sig}, nil
}
