package graph

import (
	"encoding/base64"

	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/consent"
	"github.com/consentgraph/consentgraph/internal/policy"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// purposeModel shows p in lang, the request's language (i18n.FromContext).
func purposeModel(lang string, p policy.Purpose) *model.Purpose {
	cats := p.DataCategories
	if cats == nil {
		cats = []string{}
	}
	return &model.Purpose{ID: p.ID, Mechanism: model.ConsentMechanism(p.Mechanism), Name: p.NameIn(lang), Description: p.DescriptionIn(lang),
		DataCategories: cats}
}

func policyModel(v consent.PolicyVersion) *model.Policy {
	re := v.Reconsent
	if re == nil {
		re = []string{}
	}
	return &model.Policy{Version: v.Version, URL: v.URL, PublishedAt: v.PublishedAt, Reconsent: re}
}

// consentModel shows a status; the policy version of a default state is the
// one in force.
func consentModel(lang string, s consent.Status, current consent.PolicyVersion) *model.Consent {
	c := &model.Consent{
		Purpose: purposeModel(lang, s.Purpose), Granted: s.Granted, NeedsRenewal: s.NeedsRenewal,
		PolicyVersion: current.Version, Notes: []model.ConsentNote{},
	}
	if s.Last != nil && (s.Explicit || s.NeedsRenewal) {
		at := s.Last.At
		m := model.ConsentMethod(s.Last.Method)
		c.UpdatedAt, c.Method, c.PolicyVersion = &at, &m, s.Last.PolicyVersion
	}
	return c
}

func consentEventModel(owner string, e consent.Event) *model.ConsentEvent {
	return &model.ConsentEvent{
		Owner: owner, Sequence: int(e.Seq), Purpose: e.Purpose, Action: model.ConsentAction(e.Action),
		PolicyVersion: e.PolicyVersion, At: e.At, Method: model.ConsentMethod(e.Method),
		PreviousHash: e.PrevHash, Hash: e.Hash, Receipt: e.Receipt,
	}
}

func consentPageModel(owner string, p *consent.Page) *model.ConsentEventConnection {
	c := &model.ConsentEventConnection{
		Edges:      make([]*model.ConsentEventEdge, 0, len(p.Events)),
		PageInfo:   &model.PageInfo{HasNextPage: p.HasNextPage, HasPreviousPage: p.HasPreviousPage},
		TotalCount: p.TotalCount,
	}
	for _, e := range p.Events {
		c.Edges = append(c.Edges, &model.ConsentEventEdge{Cursor: consent.Cursor(e.Seq), Node: consentEventModel(owner, e)})
	}
	if n := len(c.Edges); n > 0 {
		c.PageInfo.StartCursor, c.PageInfo.EndCursor = &c.Edges[0].Cursor, &c.Edges[n-1].Cursor
	}
	return c
}

func receiptCheckModel(ch consent.Check) *model.ReceiptCheck {
	out := &model.ReceiptCheck{Valid: ch.Valid}
	if ch.Kid != "" {
		kid := ch.Kid
		out.Kid = &kid
	}
	if !ch.Valid {
		reason := ch.Reason
		out.Reason = &reason
		return out
	}
	c := ch.Claims
	purpose, action, id, pv, at := c.Purpose, model.ConsentAction(c.Action), c.ID, c.PolicyVersion, ch.IssuedAt()
	out.Purpose, out.Action, out.ReceiptID, out.PolicyVersion, out.IssuedAt = &purpose, &action, &id, &pv, &at
	return out
}

func receiptModel(lang string, r *consent.Result, current consent.PolicyVersion) *model.ConsentReceipt {
	return &model.ConsentReceipt{Receipt: r.Receipt, Consent: consentModel(lang, r.Status, current), Changed: r.Changed}
}

func logProofModel(p *translog.Inclusion) *model.LogInclusionProof {
	b64 := base64.StdEncoding.EncodeToString
	m := &model.LogInclusionProof{LeafIndex: int(p.LeafIndex), TreeSize: int(p.TreeSize), LeafHash: b64(p.LeafHash),
		LeafData: b64(p.LeafData), Hashes: make([]string, len(p.Hashes)), Checkpoint: p.Checkpoint}
	for i, h := range p.Hashes {
		m.Hashes[i] = b64(h)
	}
	return m
}
