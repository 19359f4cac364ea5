package graph_test

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/internal/auth"
)

// The schema guarantee of the privacy policy: from any field a partner (or
// an anonymous caller) may call, no path through the schema reaches the User
// type or a field marked @pii. The walk reads the schema files themselves,
// so it holds for every field anyone adds.
//
// A field without @auth may be called by anyone; a partner may also call
// fields with @auth(requires: PARTNER); nested fields are followed under the
// same rule. Each exception below is a root field that reaches User by type
// but cannot hand anyone else's data to the caller, with the reason and the
// test that proves it at run time.
var exceptions = map[string]string{
	"Query.me": "returns the caller's own account, null for anonymous callers and partners " +
		"(internal/app TestMeIsNullForAnonymousAndPartners sends the real requests)",
	"Mutation.register": "signs the caller in: the payload's user is the account just created, resolved as its owner " +
		"(auth.SignIn switches the principal first); partner keys are refused (TestPartnerKeyCannotActAsUser)",
	"Mutation.login": "signs the caller in as the account whose password they gave, resolved as its owner; " +
		"partner keys are refused (TestPartnerKeyCannotActAsUser)",
}

func loadSchema(t *testing.T, extra ...string) *ast.Schema {
	t.Helper()
	sources := graph.SchemaSources()
	for i, e := range extra {
		sources = append(sources, &ast.Source{Name: "extra" + string(rune('0'+i)), Input: e})
	}
	s, gerr := gqlparser.LoadSchema(sources...)
	if gerr != nil {
		t.Fatalf("parse schema: %v", gerr)
	}
	if s.Types["User"] == nil || s.Directives["pii"] == nil || s.Directives["auth"] == nil {
		t.Fatal("the schema has no User type or no @pii/@auth directives; the walk would prove nothing")
	}
	return s
}

// caller is who calls: a role, or "" for anonymous.
type caller struct {
	role auth.Role
	// partnerFieldsOnly models graph.PartnerGuard: partner keys may call only
	// root fields marked @auth(requires: PARTNER).
	partnerFieldsOnly bool
}

func (c caller) mayCall(def *ast.FieldDefinition, root bool) bool {
	required := graph.RequiredRole(def)
	if root && c.partnerFieldsOnly {
		return required == auth.RolePartner
	}
	if required == "" {
		return true
	}
	if c.role == "" {
		return false
	}
	return (&auth.Principal{Role: c.role}).Satisfies(required)
}

// reach returns, per root field the caller may call ("Query.me"), the
// paths by which it reaches User or a @pii field.
func reach(s *ast.Schema, c caller) (roots []string, found map[string][]string) {
	found = map[string][]string{}
	for _, op := range []*ast.Definition{s.Query, s.Mutation, s.Subscription} {
		if op == nil {
			continue
		}
		for _, f := range op.Fields {
			if strings.HasPrefix(f.Name, "__") || !c.mayCall(f, true) {
				continue
			}
			root := op.Name + "." + f.Name
			roots = append(roots, root)
			seen := map[string]bool{}
			var visit func(typeName, path string)
			visit = func(typeName, path string) {
				if typeName == "User" {
					found[root] = append(found[root], path+" → User")
					return
				}
				if seen[typeName] {
					return
				}
				seen[typeName] = true
				def := s.Types[typeName]
				if def == nil {
					return
				}
				switch def.Kind {
				case ast.Interface, ast.Union:
					for _, impl := range s.GetPossibleTypes(def) {
						visit(impl.Name, path)
					}
				case ast.Object:
					for _, fd := range def.Fields {
						if strings.HasPrefix(fd.Name, "__") || !c.mayCall(fd, false) {
							continue
						}
						p := path + " → " + typeName + "." + fd.Name
						if fd.Directives.ForName("pii") != nil {
							found[root] = append(found[root], p+" (@pii)")
							continue
						}
						visit(fd.Type.Name(), p)
					}
				}
			}
			if f.Directives.ForName("pii") != nil {
				found[root] = append(found[root], root+" (@pii)")
				continue
			}
			visit(f.Type.Name(), root)
		}
	}
	sort.Strings(roots)
	return roots, found
}

func checkWalk(t *testing.T, s *ast.Schema, c caller, allowed map[string]string) {
	t.Helper()
	roots, found := reach(s, c)
	if len(roots) == 0 {
		t.Fatal("no callable field at all; the walk proves nothing")
	}
	for root, paths := range found {
		if _, ok := allowed[root]; ok {
			continue
		}
		t.Errorf("%s reaches personal data:\n  %s", root, strings.Join(paths, "\n  "))
	}
	for root := range allowed {
		if slices.Contains(roots, root) && len(found[root]) == 0 {
			t.Errorf("exception %s is no longer needed (it reaches no User or @pii field): remove it", root)
		}
	}
	t.Logf("callable: %s", strings.Join(roots, ", "))
}

func TestPartnerCannotReachPersonalData(t *testing.T) {
	s := loadSchema(t)
	// Every field a partner key may call by the fields' own rules.
	checkWalk(t, s, caller{role: auth.RolePartner}, exceptions)
	// What PartnerGuard actually lets a partner key call: no exception at all.
	roots, found := reach(s, caller{role: auth.RolePartner, partnerFieldsOnly: true})
	if !slices.Contains(roots, "Query.demographics") || !slices.Contains(roots, "Query.partnerMe") {
		t.Fatalf("partner fields %v: want demographics and partnerMe", roots)
	}
	for root, paths := range found {
		t.Errorf("partner field %s reaches personal data:\n  %s", root, strings.Join(paths, "\n  "))
	}
}

func TestAnonymousCannotReachPersonalData(t *testing.T) {
	checkWalk(t, loadSchema(t), caller{}, exceptions)
}

// The walk finds what it is meant to find.
func TestSchemaWalkFindsLeaks(t *testing.T) {
	cases := map[string]string{
		"a user behind a partner field":       `extend type DemographicCell { owner: User }`,
		"a @pii field behind a partner field": `extend type PartnerSelf { contactEmail: String @pii }`,
		"a user behind an interface": `interface Node { id: ID! }
			extend type User implements Node
			extend type Query { node(id: ID!): Node }`,
		"a @pii root field anyone may call":      `extend type Query { anyonesEmail(id: ID!): String @pii }`,
		"processor links behind a partner field": `extend type PartnerSelf { links: [ProcessorLink!]! }`,
	}
	for name, ext := range cases {
		t.Run(name, func(t *testing.T) {
			s := loadSchema(t, ext)
			leaks := 0
			for _, c := range []caller{{role: auth.RolePartner}, {}} {
				_, found := reach(s, c)
				for root := range found {
					if _, ok := exceptions[root]; !ok {
						leaks++
					}
				}
			}
			if leaks == 0 {
				t.Fatal("the walk did not find the leak")
			}
		})
	}
}
