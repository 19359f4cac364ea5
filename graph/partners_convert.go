package graph

import (
	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/demographics"
	"github.com/consentgraph/consentgraph/internal/partners"
)

func partnerModel(p *partners.Partner) *model.Partner {
	return &model.Partner{
		ID: p.ID, Name: p.Name, EpsilonBudget: p.EpsilonBudget, BudgetPeriodDays: p.BudgetPeriodDays,
		BudgetRemaining: p.BudgetRemaining, BudgetResetsAt: p.BudgetResetsAt, CreatedAt: p.CreatedAt, RevokedAt: p.RevokedAt,
	}
}

func dimensions(in []model.Dimension) []demographics.Dimension {
	out := make([]demographics.Dimension, len(in))
	for i, d := range in {
		out[i] = demographics.Dimension(d)
	}
	return out
}

func reportModel(r *demographics.Report) *model.DemographicReport {
	out := &model.DemographicReport{
		Cells: make([]*model.DemographicCell, 0, len(r.Cells)), K: r.K, Threshold: int(r.Threshold),
		Epsilon: r.Epsilon, Delta: r.Delta, BudgetRemaining: r.BudgetRemaining, GeneratedAt: r.GeneratedAt,
	}
	for _, c := range r.Cells {
		m := &model.DemographicCell{
			Country: c.Country, Gender: c.Gender, Language: c.Language, SignupMonth: c.SignupMonth, Count: int(c.Count),
		}
		if c.AgeBand != nil {
			b := model.AgeBand(*c.AgeBand)
			m.AgeBand = &b
		}
		out.Cells = append(out.Cells, m)
	}
	return out
}

func reconcileModel(r *demographics.ReconcileReport) *model.ReconcileReport {
	return &model.ReconcileReport{
		StartedAt: r.StartedAt, DurationMs: int(r.Duration.Milliseconds()), UsersCounted: r.UsersCounted,
		MembersRepaired: r.MembersRepaired, CellsChecked: r.CellsChecked, CellsRepaired: r.CellsRepaired,
		Drift: int(r.Drift), CellsSkipped: r.CellsSkipped,
	}
}
