package graph

import (
	"context"

	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/outbox"
)

// processorModel shows p in lang, the request's language.
func processorModel(lang string, p *outbox.Processor) *model.Processor {
	m := &model.Processor{Name: p.Name, Type: p.Type, Purpose: p.Purpose, DataCategories: append([]string{}, p.Fields...),
		Description: p.DescriptionIn(lang), Enabled: p.Enabled()}
	if h := p.Health(); h != nil { // cached: the provider is never asked here
		m.Health = &model.ProcessorHealth{Ok: h.OK, CheckedAt: h.CheckedAt}
		if !h.OK {
			m.Health.Message = &h.Message
		}
	}
	return m
}

func processorModels(lang string, ps []*outbox.Processor) []*model.Processor {
	out := make([]*model.Processor, 0, len(ps))
	for _, p := range ps {
		out = append(out, processorModel(lang, p))
	}
	return out
}

func outboxItemModel(it *outbox.Item) *model.OutboxItem {
	m := &model.OutboxItem{ID: it.ID, Processor: it.Processor, Purpose: it.Purpose, Action: model.DeliveryAction(it.Action),
		State: model.DeliveryState(it.State), Attempts: it.Attempts, NextAttemptAt: it.NextAt, Cause: it.Cause,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt}
	if it.LastError != "" {
		m.LastError = &it.LastError
	}
	if it.Note != "" {
		m.Note = &it.Note
	}
	return m
}

// addConsentNotes marks granted consents whose processors wait for an
// email address with NEEDS_EMAIL, or for its verification with
// NEEDS_VERIFIED_EMAIL.
func (r *Resolver) addConsentNotes(ctx context.Context, userID string, cs ...*model.Consent) error {
	if r.Processing == nil {
		return nil
	}
	var need bool
	for _, c := range cs {
		if c.Granted && len(r.Processing.ForPurpose(c.Purpose.ID)) > 0 {
			need = true
		}
	}
	if !need {
		return nil
	}
	u, err := r.Accounts.Get(ctx, userID)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.Granted {
			switch r.Processing.EmailNeed(u, c.Purpose.ID) {
			case outbox.NeedsEmail:
				c.Notes = append(c.Notes, model.ConsentNoteNeedsEmail)
			case outbox.NeedsVerifiedEmail:
				c.Notes = append(c.Notes, model.ConsentNoteNeedsVerifiedEmail)
			}
		}
	}
	return nil
}
