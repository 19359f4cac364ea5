package plugintest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
)

// Options configure Conformance.
type Options struct {
	// Type is the registered processor type under test (import its
	// package so that its init function registers it).
	Type string
	// Provider is a fake of the provider's API, following its public
	// documentation; Conformance runs it behind a Recorder. Nil: every
	// request is answered 200 with an empty JSON object (enough for a
	// plugin whose provider keeps no state, like a webhook receiver).
	Provider http.Handler
	// Settings returns the instance settings pointing at baseURL, the
	// Recorder's URL. Nil: no settings.
	Settings func(baseURL string) map[string]any
	// Env, when set, adjusts the Env (from NewEnv) before the factory runs.
	Env func(env *plugins.Env)
	// Fields returns the fields delivered for subject. Nil: every manifest
	// category with a plausible value, and a distinct email per subject.
	Fields func(subject string) map[string]string
	// Holds reports whether the provider still holds the user of a
	// delivered request as a live contact (subscribed, not deleted); the
	// checks of forget and erase use it. Nil: those checks only require
	// success.
	Holds func(delivered plugins.Request) bool
	// Effects counts the changes the provider applied so far (members
	// created, events accepted after deduplication by idempotency key);
	// the idempotency check requires that repeating a request adds none.
	// Nil: the check only requires the same Result on every repeat.
	Effects func() int
	// RateLimitHeader is the header the provider names its wait in on a
	// 429 answer (default Retry-After, in seconds). The plugin must return
	// a plugins.RetryAfter error honouring it.
	RateLimitHeader string
	// RateLimitValue is the header value the fake sends (default "7") and
	// RateLimitWait the wait it means (default 7s).
	RateLimitValue string
	RateLimitWait  time.Duration
	// Skip names checks to leave out, with the reason in the test log:
	// "idempotent", "forget-unknown", "forget-empty-ref", "erase",
	// "rate-limit", "cancel".
	Skip map[string]string
}

// Conformance checks the promises the outbox relies on, each as a subtest
// with a fresh instance and Recorder:
//
//   - idempotent: the same Request (same ID) delivered three times has one
//     effect and the same Result;
//   - forget-unknown: forgetting a user never delivered succeeds;
//   - forget-empty-ref: a forget with an empty Ref (the core may lose the
//     Ref after a crash) succeeds and removes the user: the subject is
//     enough;
//   - erase: a forget with Erase removes the user;
//   - rate-limit: a 429 answer makes Deliver and Forget return a
//     plugins.RetryAfter error with the provider's wait;
//   - cancel: a cancelled context makes Deliver return an error promptly
//     while the provider does not answer.
func Conformance(t *testing.T, o Options) {
	t.Helper()
	if _, _, ok := plugins.Lookup(o.Type); !ok {
		t.Fatalf("plugintest: type %q is not registered (known: %v); import its package", o.Type, plugins.Types())
	}
	if o.RateLimitHeader == "" {
		o.RateLimitHeader = "Retry-After"
	}
	if o.RateLimitValue == "" {
		o.RateLimitValue, o.RateLimitWait = "7", 7*time.Second
	}
	run := func(name string, check func(t *testing.T, c *conformance)) {
		t.Run(name, func(t *testing.T) {
			if why, ok := o.Skip[name]; ok {
				t.Skip(why)
			}
			check(t, newConformance(t, o))
		})
	}
	run("idempotent", checkIdempotent)
	run("forget-unknown", checkForgetUnknown)
	run("forget-empty-ref", checkForgetEmptyRef)
	run("erase", checkErase)
	run("rate-limit", checkRateLimit)
	run("cancel", checkCancel)
}

type conformance struct {
	o   Options
	rec *Recorder
	p   plugins.Processor
	env plugins.Env
	n   int
}

func newConformance(t *testing.T, o Options) *conformance {
	t.Helper()
	rec := NewRecorder(t, o.Provider)
	var settings map[string]any
	if o.Settings != nil {
		settings = o.Settings(rec.URL)
	}
	env := NewEnv(t, o.Type, "conformance", settings)
	if o.Env != nil {
		o.Env(&env)
	}
	_, factory, _ := plugins.Lookup(o.Type)
	p, err := factory(env)
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	if c, ok := p.(plugins.Closer); ok {
		t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	return &conformance{o: o, rec: rec, p: p, env: env}
}

// request is a fresh delivery for a fresh subject.
func (c *conformance) request() plugins.Request {
	c.n++
	// Random, because Provider is shared by every check of a run.
	var b [8]byte
	_, _ = rand.Read(b[:])
	subject := "s" + hex.EncodeToString(b[:])
	fields := map[string]string{}
	if c.o.Fields != nil {
		fields = c.o.Fields(subject)
	} else {
		for _, cat := range c.env.Fields {
			fields[cat] = sampleValue(cat, subject)
		}
	}
	return plugins.Request{ID: fmt.Sprintf("item-%s-%d", subject, c.n), Subject: subject, Purpose: c.env.Purpose, Fields: fields, Attempt: 1}
}

func sampleValue(category, subject string) string {
	switch category {
	case plugins.CategoryEmail:
		return subject + "@example.org"
	case plugins.CategoryAgeBand:
		return "25-34"
	case plugins.CategoryCountry:
		return "DE"
	case plugins.CategoryGender:
		return "OTHER"
	case plugins.CategoryLanguage:
		return "de"
	}
	return "x"
}

func (c *conformance) deliver(t *testing.T, r plugins.Request) plugins.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.p.Deliver(ctx, r)
	if err != nil {
		t.Fatalf("Deliver(%s): %v", r.ID, err)
	}
	return res
}

func (c *conformance) forget(t *testing.T, r plugins.Request) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.p.Forget(ctx, r); err != nil {
		t.Fatalf("Forget(%s, Ref %q, Erase %v): %v", r.ID, r.Ref, r.Erase, err)
	}
}

// forgetOf is the forget request the core sends after d was delivered.
func forgetOf(d plugins.Request, ref string, erase bool) plugins.Request {
	return plugins.Request{ID: d.ID + "-forget", Subject: d.Subject, Purpose: d.Purpose, Ref: ref, Erase: erase, Attempt: 1}
}

func checkIdempotent(t *testing.T, c *conformance) {
	r := c.request()
	before := 0
	if c.o.Effects != nil {
		before = c.o.Effects()
	}
	first := c.deliver(t, r)
	afterFirst := 0
	if c.o.Effects != nil {
		afterFirst = c.o.Effects()
		if afterFirst == before {
			t.Fatalf("the first delivery had no effect (Effects stayed %d)", before)
		}
	}
	// A repeat carries what the core had before the first attempt: a
	// lost answer means it never learnt the Ref.
	for i := 2; i <= 3; i++ {
		r.Attempt = i
		if got := c.deliver(t, r); !reflect.DeepEqual(got, first) {
			t.Errorf("repeat %d returned %+v, the first %+v", i, got, first)
		}
	}
	if c.o.Effects != nil && c.o.Effects() != afterFirst {
		t.Errorf("repeating the same request changed the provider again: effects %d after the first, %d after three", afterFirst, c.o.Effects())
	}
	if c.o.Holds != nil && !c.o.Holds(r) {
		t.Error("the provider does not hold the delivered user")
	}
}

func checkForgetUnknown(t *testing.T, c *conformance) {
	r := c.request()
	c.forget(t, forgetOf(r, "", false))
	c.forget(t, forgetOf(r, "", true))
}

func checkForgetEmptyRef(t *testing.T, c *conformance) {
	r := c.request()
	c.deliver(t, r)
	c.forget(t, forgetOf(r, "", false))
	if c.o.Holds != nil && c.o.Holds(r) {
		t.Error("a forget with an empty Ref left the user at the provider")
	}
	// The erasure that may follow must still succeed.
	c.forget(t, forgetOf(r, "", true))
	if c.o.Holds != nil && c.o.Holds(r) {
		t.Error("an erase with an empty Ref left the user at the provider")
	}
}

func checkErase(t *testing.T, c *conformance) {
	r := c.request()
	res := c.deliver(t, r)
	c.forget(t, forgetOf(r, res.Ref, true))
	if c.o.Holds != nil && c.o.Holds(r) {
		t.Error("erasure left the user at the provider")
	}
	c.forget(t, forgetOf(r, res.Ref, true)) // a repeat after a lost answer
}

func checkRateLimit(t *testing.T, c *conformance) {
	r := c.request()
	c.rec.Respond(RateLimited(c.o.RateLimitHeader, c.o.RateLimitValue))
	_, err := c.p.Deliver(context.Background(), r)
	wantRetryAfter(t, "Deliver", err, c.o.RateLimitWait)
	res := c.deliver(t, r) // the provider lets it through now
	c.rec.Respond(RateLimited(c.o.RateLimitHeader, c.o.RateLimitValue))
	err = c.p.Forget(context.Background(), forgetOf(r, res.Ref, false))
	wantRetryAfter(t, "Forget", err, c.o.RateLimitWait)
}

func wantRetryAfter(t *testing.T, op string, err error, want time.Duration) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded on a 429 answer", op)
	}
	if plugins.IsPermanent(err) {
		t.Fatalf("%s: a 429 answer is not permanent: %v", op, err)
	}
	d, ok := plugins.RetryAfterOf(err)
	if !ok {
		t.Fatalf("%s: want a plugins.RetryAfter error on a 429 answer, got %v", op, err)
	}
	// Header values are whole seconds, or a date, so allow for rounding.
	if d < want-time.Second || d > want+time.Second {
		t.Errorf("%s: retry after %s, the provider asked for %s", op, d, want)
	}
}

func checkCancel(t *testing.T, c *conformance) {
	r := c.request()
	c.rec.Respond(Response{Hang: true}, Response{Hang: true}, Response{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := c.p.Deliver(ctx, r)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Deliver succeeded although its context was cancelled before the provider answered")
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Deliver returned %s after cancellation", took)
		}
		if !errors.Is(err, context.Canceled) {
			t.Logf("Deliver's error does not wrap context.Canceled (fine, but %%w helps): %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Deliver did not return within 5s of its context being cancelled")
	}
}
