package example_test

import (
	"context"
	"testing"

	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/example"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
)

func TestExampleProcessor(t *testing.T) {
	m, factory, ok := plugins.Lookup(example.Type)
	if !ok || m.Purpose != "surveys" || len(m.DataCategories) != 3 {
		t.Fatalf("not registered as documented: %+v", m)
	}
	if _, err := factory(plugins.Env{Name: "x", Settings: map[string]any{"colour": "red"}}); err == nil {
		t.Error("an unknown setting was accepted")
	}
	p, err := factory(plugins.Env{Name: "example-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := plugins.Request{ID: "item-1", Subject: "s1", Fields: map[string]string{"user.demographic.country": "DE"}}
	for range 3 { // retried deliveries: one effect
		if _, err := p.Deliver(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	crm := example.Instance("example-test")
	if got, _ := crm.Contact("s1"); got["user.demographic.country"] != "DE" || crm.Applied() != 1 {
		t.Fatalf("contact %v, %d effects", got, crm.Applied())
	}
	if err := p.Forget(ctx, plugins.Request{ID: "item-2", Subject: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := crm.Contact("s1"); ok {
		t.Error("not forgotten")
	}
}

func TestExampleConformance(t *testing.T) {
	plugintest.Conformance(t, plugintest.Options{
		Type: example.Type,
		Env:  func(env *plugins.Env) { env.Name = "example-conformance" },
		Holds: func(r plugins.Request) bool {
			_, ok := example.Instance("example-conformance").Contact(r.Subject)
			return ok
		},
		Effects: func() int { return example.Instance("example-conformance").Applied() },
		Skip: map[string]string{
			"rate-limit": "keeps everything in memory: no provider to throttle it",
			"cancel":     "keeps everything in memory: never waits",
		},
	})
}
