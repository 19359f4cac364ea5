package graph

import (
	"slices"

	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/outbox"
)

// processorLinkModels converts links for a reader of lang (the request's
// language; "" reads English): item and action titles come in lang when
// the processor gave them so.
func processorLinkModels(lang, owner string, links []outbox.UserLink) []*model.ProcessorLink {
	out := make([]*model.ProcessorLink, 0, len(links))
	for _, l := range links {
		m := &model.ProcessorLink{Owner: owner, Processor: processorModel(lang, l.Processor), State: model.ProcessorLinkState(l.Status.State),
			Items: []*model.ProcessorItem{}, Details: l.Status.Details, Actions: []*model.ProcessorAction{}}
		if !l.UpdatedAt.IsZero() {
			at := l.UpdatedAt
			m.UpdatedAt = &at
		}
		for _, it := range l.Status.Items {
			mi := &model.ProcessorItem{Kind: it.Kind, Title: it.TitleIn(lang)}
			if it.URL != "" {
				mi.URL = &it.URL
			}
			if !it.ExpiresAt.IsZero() {
				mi.ExpiresAt = &it.ExpiresAt
			}
			m.Items = append(m.Items, mi)
		}
		// Only actions the processor still declares: a status stored by an
		// earlier version may name one it dropped.
		for _, a := range l.Processor.Actions() {
			if slices.Contains(l.Status.Actions, a.ID) {
				m.Actions = append(m.Actions, &model.ProcessorAction{ID: a.ID, Title: a.TitleIn(lang)})
			}
		}
		out = append(out, m)
	}
	return out
}
