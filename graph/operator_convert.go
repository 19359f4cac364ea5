package graph

import (
	"github.com/consentgraph/consentgraph/graph/model"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/policy"
)

// OperatorModel is what Query.operator answers, built once at start-up
// from the configuration (it does not change while the server runs).
// Optional values the file leaves out are null, not empty strings.
func OperatorModel(b config.Branding, c policy.Controller) *model.Operator {
	return &model.Operator{
		Name: b.Name, LogoURL: nonEmpty(b.LogoURL), AccentColor: b.AccentColor, PolicyURL: b.PolicyURL,
		Controller: &model.DataController{Name: c.Name, Email: nonEmpty(c.Email), Jurisdiction: nonEmpty(c.Jurisdiction)},
	}
}
