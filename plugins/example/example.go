// Package example is the complete example processor of docs/plugins.md: an
// in-memory "CRM" that keeps, per subject, the fields it was given. It is
// useful for trying the outbox out and in tests; do not use it in
// production (it forgets everything on restart).
package example

import (
	"context"
	"maps"
	"sync"

	"github.com/consentgraph/consentgraph/plugins"
)

// Type is the processor type name used in the config file.
const Type = "example"

// init registers the type: importing the package is all it takes.
func init() {
	plugins.Register(plugins.Manifest{
		Type:           Type,
		Purpose:        plugins.PurposeSurveys,
		DataCategories: []string{plugins.CategoryEmail, plugins.CategoryAgeBand, plugins.CategoryCountry},
		Description:    "Example processor that keeps what it receives in memory.",
	}, New)
}

// CRM is the in-memory state of one instance.
type CRM struct {
	mu sync.Mutex
	// Contacts maps subject → fields.
	contacts map[string]map[string]string
	// seen holds every idempotency key applied, so repeats are no-ops.
	seen    map[string]bool
	applied int
}

var (
	mu        sync.Mutex
	instances = map[string]*CRM{}
)

// Instance returns the CRM of the instance called name (created on first use).
func Instance(name string) *CRM {
	mu.Lock()
	defer mu.Unlock()
	c, ok := instances[name]
	if !ok {
		c = &CRM{contacts: map[string]map[string]string{}, seen: map[string]bool{}}
		instances[name] = c
	}
	return c
}

// New builds an instance. It takes no settings.
func New(env plugins.Env) (plugins.Processor, error) {
	var none struct{}
	if err := plugins.DecodeSettings(env, &none); err != nil { // refuse unknown settings
		return nil, err
	}
	return Instance(env.Name), nil
}

// Deliver stores the fields under the subject, once per idempotency key.
func (c *CRM) Deliver(_ context.Context, r plugins.Request) (plugins.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.seen[r.ID] {
		c.seen[r.ID] = true
		c.applied++
		c.contacts[r.Subject] = maps.Clone(r.Fields)
	}
	return plugins.Result{Ref: r.Subject}, nil
}

// Forget removes the subject.
func (c *CRM) Forget(_ context.Context, r plugins.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.seen[r.ID] {
		c.seen[r.ID] = true
		c.applied++
		delete(c.contacts, r.Subject)
	}
	return nil
}

// Contact returns the fields held for subject.
func (c *CRM) Contact(subject string) (map[string]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.contacts[subject]
	return maps.Clone(f), ok
}

// Contacts returns a copy of everything held.
func (c *CRM) Contacts() map[string]map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[string]string{}
	for k, v := range c.contacts {
		out[k] = maps.Clone(v)
	}
	return out
}

// Applied counts the effects applied (distinct idempotency keys).
func (c *CRM) Applied() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}
