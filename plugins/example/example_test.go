package example_test

import (
	"context"
	"testing"

	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/example"
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
