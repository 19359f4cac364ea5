package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/example"
)

// throttler answers the first n requests with 429 and a Retry-After, then
// 204, like a provider recovering from a long rate limit.
type throttler struct {
	mu       sync.Mutex
	n        int
	requests int
	ok       int
}

func (th *throttler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	th.mu.Lock()
	defer th.mu.Unlock()
	th.requests++
	if th.requests <= th.n {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	th.ok++
	w.WriteHeader(http.StatusNoContent)
}

// A provider that throttles for longer than MaxAttempts tries does not send
// the item to DEAD: throttles are not failures. Once it recovers the item is
// delivered, and the DONE item keeps no stale lastError.
func TestThrottlesDoNotCountTowardDeadAndSuccessClearsLastError(t *testing.T) {
	th := &throttler{n: 15}
	s, _ := webhookServer(t, th, "")
	c := s.Register(t, "throttled_ann")
	changeConsent(t, c, true, "surveys")
	tuning := fast
	tuning.MaxAttempts = 3 // far fewer than the 15 throttles
	d := s.App.Outbox.Dispatcher("t", tuning)
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	sawThrottle := false
	for len(items(t, s, outbox.Pending)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still pending after %d requests: %+v", th.requests, items(t, s, outbox.Pending))
		}
		if _, err := d.Once(ctx); err != nil {
			t.Fatal(err)
		}
		for _, it := range items(t, s, outbox.Pending) {
			if strings.Contains(it.LastError, "429") {
				sawThrottle = true
				if it.Attempts != 0 {
					t.Errorf("a throttled item has %d attempts counted, want 0", it.Attempts)
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if dead := items(t, s, outbox.Dead); len(dead) != 0 {
		t.Fatalf("15 throttles with MaxAttempts 3 sent the item to DEAD: %+v", dead)
	}
	done := items(t, s, outbox.Done)
	if len(done) != 1 || th.ok != 1 || th.requests != 16 || !sawThrottle {
		t.Fatalf("want one item delivered after 15 throttles; done %d, ok %d, requests %d, saw throttle %v", len(done), th.ok, th.requests, sawThrottle)
	}
	if done[0].LastError != "" {
		t.Errorf("a DONE item keeps lastError %q", done[0].LastError)
	}
}

// Beyond ThrottleWindow a throttle counts again, so a provider that never
// stops throttling still ends in DEAD.
func TestThrottlesCountAfterTheThrottleWindow(t *testing.T) {
	th := &throttler{n: 1 << 30}
	s, _ := webhookServer(t, th, "")
	c := s.Register(t, "throttled_bob")
	changeConsent(t, c, true, "surveys")
	tuning := fast
	tuning.MaxAttempts, tuning.ThrottleWindow = 3, time.Nanosecond
	drain(t, s, s.App.Outbox.Dispatcher("t", tuning), 10*time.Second)
	if dead := items(t, s, outbox.Dead); len(dead) != 1 || dead[0].Attempts != 3 {
		t.Fatalf("want the item DEAD after 3 counted throttles, got %+v", dead)
	}
}

// A crash after "attempted" was stored and the provider received the data,
// but before the outcome (and the provider's Ref) was recorded: the
// withdrawal that follows still reaches the provider, with Ref "", and the
// processor forgets the user by subject.
func TestForgetAfterACrashBeforeTheRefWasStored(t *testing.T) {
	s := startWithProcessors(t, strings.ReplaceAll(twoExamples, "crm-", "crash-"))
	c, id := userWithData(t, s, "crash_cid", true)
	changeConsent(t, c, true, "surveys")
	ctx := context.Background()
	p, _ := s.App.Outbox.Processor("crash-a")
	queue := s.Store().Outbox()

	// The process that is about to crash: it claims the delivery with a
	// short lease, marks the attempt, and the provider gets the data...
	now := time.Now().UTC()
	claimed, err := queue.Claim(ctx, "doomed", []string{p.Name}, now, now.Add(50*time.Millisecond), 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	if ok, err := queue.MarkAttempted(ctx, id, p.Name); err != nil || !ok {
		t.Fatalf("mark attempted: %v, %v", ok, err)
	}
	subject, err := s.App.Outbox.Pseudonym(ctx, p.Name, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Impl.Deliver(ctx, plugins.Request{ID: claimed[0].ID, Subject: subject, Purpose: p.Purpose,
		Fields: map[string]string{"user.demographic.country": "DE"}, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	// ... and dies before recording the outcome: no Ref is stored.
	r, err := queue.Recipient(ctx, id)
	if err != nil || !r.Procs[p.Name].Attempted || r.Procs[p.Name].Ref != "" {
		t.Fatalf("state after the crash: %+v, %v; want attempted without a ref", r.Procs, err)
	}
	crm := example.Instance("crash-a")
	if _, ok := crm.Contact(subject); !ok {
		t.Fatal("the provider did not get the delivery")
	}
	time.Sleep(60 * time.Millisecond) // the dead process's lease runs out

	changeConsent(t, c, false, "surveys")
	drain(t, s, s.App.Outbox.Dispatcher("t", fast), 10*time.Second)
	if _, ok := crm.Contact(subject); ok {
		t.Fatal("the provider still holds the user: the forget was skipped")
	}
	forgotten := false
	for _, it := range items(t, s, outbox.Done) {
		if it.Processor == p.Name && it.Action == outbox.Forget {
			forgotten = true
		}
	}
	if !forgotten {
		t.Errorf("no DONE forget for %s: %+v", p.Name, items(t, s, ""))
	}
}
