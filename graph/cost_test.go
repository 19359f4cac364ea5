package graph_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/complexity"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/graph"
)

// needsCost lists the fields that must have an explicit cost: every root
// field, every field with a resolver of its own (the methods of the
// generated XResolver interfaces) and every field with arguments (a page
// size, a receipt to check). Plain struct fields returning scalars cost 1.
func needsCost(t *testing.T, s *ast.Schema) []string {
	t.Helper()
	resolverFields := map[string]bool{}
	root := reflect.TypeFor[graph.ResolverRoot]()
	for i := range root.NumMethod() {
		m := root.Method(i) // Query() QueryResolver …
		iface := m.Type.Out(0)
		for j := range iface.NumMethod() {
			resolverFields[m.Name+"."+goName(iface.Method(j).Name)] = true
		}
	}
	if !resolverFields["User."+goName("consentHistory")] || !resolverFields["Query."+goName("exportMyData")] {
		t.Fatalf("resolver interfaces not found by reflection: %v", resolverFields)
	}
	var out []string
	for _, def := range s.Types {
		if def.Kind != ast.Object || strings.HasPrefix(def.Name, "__") {
			continue
		}
		isRoot := def == s.Query || def == s.Mutation || def == s.Subscription
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			if isRoot || len(f.Arguments) > 0 || resolverFields[def.Name+"."+goName(f.Name)] {
				out = append(out, def.Name+"."+f.Name)
			}
		}
	}
	return out
}

// goName is a GraphQL or Go field name reduced to what gqlgen keeps when it
// names the Go side (Type.consentHistory is ConsentHistory, Partner.apiKey
// APIKey): lower case, without underscores.
func goName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", ""))
}

// hasCost reports whether graph.Costs sets the complexity function of
// Type.field, and whether such a function exists at all in the generated
// ComplexityRoot (a name the walk got wrong must not pass silently).
func hasCost(costs reflect.Value, key string) (set, exists bool) {
	typeName, field, _ := strings.Cut(key, ".")
	typ := costs.FieldByName(typeName)
	if !typ.IsValid() {
		return false, false
	}
	fn := typ.FieldByNameFunc(func(name string) bool { return goName(name) == goName(field) })
	if !fn.IsValid() {
		return false, false
	}
	return !fn.IsNil(), true
}

func TestEveryExpensiveFieldHasACost(t *testing.T) {
	s := loadSchema(t)
	costs := reflect.ValueOf(graph.Costs())
	fields := needsCost(t, s)
	if len(fields) < 30 {
		t.Fatalf("only %d fields need a cost; the walk is broken: %v", len(fields), fields)
	}
	for _, key := range fields {
		set, exists := hasCost(costs, key)
		switch {
		case !exists:
			t.Errorf("%s: no such complexity function in the generated ComplexityRoot", key)
		case !set:
			t.Errorf("%s returns data from a resolver or takes arguments but has no cost in graph/cost.go", key)
		}
	}
}

// The walk finds what it is meant to find: a new root field or a new field
// with arguments, neither priced.
func TestCostWalkFindsUnpricedFields(t *testing.T) {
	s := loadSchema(t, `extend type Query { everything: [User!]! }
		extend type Purpose { history(first: Int): [String!]! }`)
	fields := needsCost(t, s)
	costs := reflect.ValueOf(graph.Costs())
	for _, want := range []string{"Query.everything", "Purpose.history"} {
		found := false
		for _, f := range fields {
			found = found || f == want
		}
		if !found {
			t.Fatalf("%s is not among the fields needing a cost", want)
		}
		if set, _ := hasCost(costs, want); set {
			t.Fatalf("%s reported as priced", want)
		}
	}
}

func costOf(t *testing.T, es interface {
	Schema() *ast.Schema
}, query string, vars map[string]any) int {
	t.Helper()
	doc, errs := gqlparser.LoadQuery(es.Schema(), query)
	if errs != nil {
		t.Fatalf("invalid query %s: %v", query, errs)
	}
	return complexity.Calculate(context.Background(), graph.NewExecutableSchema(graph.Config{Complexity: graph.Costs()}), doc.Operations[0], vars)
}

// What real requests cost: the Privacy Center's page query must fit the
// default per-request maximum (internal/config, --max-complexity), and the
// abuse requests of issue 14 must not.
func TestCostsOfRealAndAbusiveQueries(t *testing.T) {
	es := graph.NewExecutableSchema(graph.Config{Complexity: graph.Costs()})
	const maxCost = 5000 // the default of --max-complexity
	page := `query Me { me { id username email emailVerified profile { birthYear country gender language }
  consents { granted needsRenewal updatedAt method policyVersion notes
    purpose { id mechanism description dataCategories processors { name description dataCategories } } }
  consentHistory(first: 100) { totalCount edges { node { sequence purpose action at method policyVersion } } } ledgerIntact
  disclosures(first: 50) { edges { node { processor purpose fields action at } } } } }`
	partner := `query($g: [Dimension!]!, $e: Float) { demographics(groupBy: $g, epsilon: $e) {
      cells { ageBand country gender language signupMonth count } threshold delta k epsilon budgetRemaining generatedAt } }`
	var history, exports strings.Builder
	history.WriteString("{ me {")
	exports.WriteString("{")
	for i := range 240 {
		fmt.Fprintf(&history, " h%d: consentHistory(first: 100) { edges { node { sequence hash receipt } } }", i)
	}
	for i := range 300 {
		fmt.Fprintf(&exports, " e%d: exportMyData { signature }", i)
	}
	history.WriteString(" } }")
	exports.WriteString(" }")
	fits := map[string]struct {
		q    string
		vars map[string]any
	}{
		"privacy center page": {page, nil},
		"partner console, all dimensions": {partner, map[string]any{
			"g": []any{"AGE_BAND", "COUNTRY", "GENDER", "LANGUAGE", "SIGNUP_MONTH"}}},
		"one export":          {`{ exportMyData { document signature } }`, nil},
		"sign up":             {`mutation($i: RegisterInput!) { register(input: $i) { user { id } } }`, map[string]any{"i": map[string]any{"username": "a", "password": "b"}}},
		"grant with receipt":  {`mutation { r: grantConsent(purpose: "x") { receipt changed consent { granted updatedAt policyVersion purpose { id } } } }`, nil},
		"policy and purposes": {`{ policy { version url } purposes { id mechanism description dataCategories processors { name } } }`, nil},
	}
	for name, c := range fits {
		n := costOf(t, es, c.q, c.vars)
		t.Logf("%s: cost %d", name, n)
		if n > maxCost/2 {
			t.Errorf("%s costs %d, more than half the default maximum %d", name, n, maxCost)
		}
	}
	for name, q := range map[string]string{"240 pages of history": history.String(), "300 exports": exports.String()} {
		n := costOf(t, es, q, nil)
		t.Logf("%s: cost %d", name, n)
		if n <= maxCost {
			t.Errorf("%s costs only %d, within the default maximum %d", name, n, maxCost)
		}
	}
	// Page size counts: a long history costs more than a short one.
	short := costOf(t, es, `{ me { consentHistory(first: 5) { edges { node { hash } } } } }`, nil)
	long := costOf(t, es, `{ me { consentHistory(first: 100) { edges { node { hash } } } } }`, nil)
	if long < 10*short {
		t.Errorf("history of 100 costs %d, of 5 %d: the page size is not priced", long, short)
	}
}

func TestExpensiveReadsCounted(t *testing.T) {
	s := loadSchema(t)
	for q, want := range map[string]int{
		`{ me { id } }`: 0,
		`{ me { consentHistory { totalCount } disclosures(first: 20) { edges { cursor } } } }`:               0,
		`{ me { consentHistory(first: 21) { totalCount } } }`:                                                1,
		`{ a: exportMyData { signature } b: exportMyData { signature } }`:                                    2,
		`{ ...F ...F } fragment F on Query { me { ledgerIntact } }`:                                          2,
		`{ me { ... on User { l: ledgerIntact d: disclosures(first: 100) { pageInfo { hasNextPage } } } } }`: 2,
	} {
		doc, errs := gqlparser.LoadQuery(s, q)
		if errs != nil {
			t.Fatalf("%s: %v", q, errs)
		}
		if got := graph.ExpensiveReads(doc.Operations[0], nil); got != want {
			t.Errorf("%s: %d expensive reads, want %d", q, got, want)
		}
	}
}
