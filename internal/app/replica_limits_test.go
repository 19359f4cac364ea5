package app_test

import (
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// TestRateLimitsHoldAcrossReplicas runs two replicas on one store and sends
// one client's mutations to both: together they admit the per-minute limit
// (plus at most the one request a replica admits before its next sync),
// not twice the burst as two independent replicas would.
func TestRateLimitsHoldAcrossReplicas(t *testing.T) {
	t.Parallel() // it may wait for the next minute
	// The limit is per calendar minute: start early in one, so the test
	// never straddles two.
	if left := 60 - time.Now().Second(); left < 20 {
		time.Sleep(time.Duration(left)*time.Second + 100*time.Millisecond)
	}
	const perMinute = 8 // a burst of 5 on each replica
	cfg := apptest.ConfigOn(t, apptest.Kind())
	limited(perMinute, 100, 100)(&cfg)
	cfg.RateLimitSync = 20 * time.Millisecond
	a := apptest.StartWith(t, cfg)
	b := apptest.StartWith(t, cfg) // the same store: a second replica

	admitted := 0
	send := func(s *apptest.Server) bool {
		r := s.Client().Do(t, logoutMutation, nil)
		if len(r.Errors) == 0 {
			admitted++
			return true
		}
		checkRateLimited(t, "over the shared limit", r)
		return false
	}
	for send(a) {
	}
	if admitted != 5 {
		t.Fatalf("replica a admitted %d, want its burst of 5", admitted)
	}
	// Give both replicas time to sync, then go to b one request at a time,
	// as a client alternating between replicas would.
	for range 10 {
		time.Sleep(5 * cfg.RateLimitSync)
		if !send(b) {
			break
		}
	}
	if admitted > perMinute+1 || admitted < perMinute {
		t.Errorf("two replicas admitted %d mutations from one IP, want the shared limit %d (at most one more)", admitted, perMinute)
	}
	time.Sleep(5 * cfg.RateLimitSync)
	if send(a) {
		t.Error("replica a admitted more after b used up the shared limit")
	}
}
