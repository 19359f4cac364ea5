package benchmarks_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/consent"
)

// BenchmarkLongLedger compares a user with CONSENTGRAPH_BENCH_LEDGER
// events (default 10000) in their consent ledger against a new user (one
// page, 20 events) on the same server, in one run: `me` with consents, the first page of the
// consent history, and a consent change. The ledger lives apart from the
// current state, so the ratios should stay near 1 (reading the whole
// ledger — ledgerIntact, the export — is the one thing that grows with it).
func BenchmarkLongLedger(b *testing.B) {
	events := envSizes(b, "CONSENTGRAPH_BENCH_LEDGER", "10000")[0]
	for _, kind := range envList("CONSENTGRAPH_BENCH_STORES", "embedded") {
		b.Run(kind, func(b *testing.B) {
			s := apptest.StartOn(b, kind, func(c *config.Config) { c.RateLimits, c.OutboxPoll = false, -1 })
			long, fresh := s.Register(b, "long-ledger"), s.Register(b, "new-user")
			var me, newMe struct{ Me struct{ ID string } }
			long.Do(b, `{ me { id } }`, nil).Decode(b, &me)
			fresh.Do(b, `{ me { id } }`, nil).Decode(b, &newMe)
			ctx := context.Background()
			// The new user has one page of history, so both pages are full.
			for i := range 20 {
				if _, err := s.App.Consent.Set(ctx, newMe.Me.ID, "surveys", i%2 == 0, consent.Explicit); err != nil {
					b.Fatal(err)
				}
			}
			t0 := time.Now()
			for i := range events {
				if _, err := s.App.Consent.Set(ctx, me.Me.ID, "surveys", i%2 == 0, consent.Explicit); err != nil {
					b.Fatal(err)
				}
			}
			fmt.Printf("\n%s store: wrote %d events in %s\n", kind, events, time.Since(t0).Round(time.Millisecond))
			history := gql(`{ me { consentHistory(first: 20) { totalCount edges { node { sequence action } } } } }`, nil)
			flip := gql(`mutation { grantConsent(purpose: "newsletter") { changed } }`, nil)
			back := gql(`mutation { withdrawConsent(purpose: "newsletter") { changed } }`, nil)
			pf, pl := newPoster(s.URL, fresh.Token), newPoster(s.URL, long.Token)
			meBody := gql(meQuery, nil)
			// Each operation alternates between the two users request by
			// request, so both see the same conditions.
			pair := func(bodyFor func(i int) []byte) (f, l latencies) {
				for i := range 40 { // warm-up
					pf.post(b, bodyFor(i))
					pl.post(b, bodyFor(i))
				}
				for i := range 400 {
					f = append(f, pf.post(b, bodyFor(i)))
					l = append(l, pl.post(b, bodyFor(i)))
				}
				return f, l
			}
			for b.Loop() {
				fm, lm := pair(func(int) []byte { return meBody })
				fh, lh := pair(func(int) []byte { return history })
				fc, lc := pair(func(i int) []byte {
					if i%2 == 0 {
						return flip
					}
					return back
				})
				fmt.Printf("p50 ms, new user / %d events: me %.3f / %.3f (%.2f×), history page %.3f / %.3f (%.2f×), consent change %.3f / %.3f (%.2f×)\n",
					events, ms(fm.pct(.5)), ms(lm.pct(.5)), ms(lm.pct(.5))/ms(fm.pct(.5)),
					ms(fh.pct(.5)), ms(lh.pct(.5)), ms(lh.pct(.5))/ms(fh.pct(.5)),
					ms(fc.pct(.5)), ms(lc.pct(.5)), ms(lc.pct(.5))/ms(fc.pct(.5)))
				b.ReportMetric(ms(lm.pct(.5))/ms(fm.pct(.5)), "me-ratio")
				b.ReportMetric(ms(lh.pct(.5))/ms(fh.pct(.5)), "history-ratio")
				b.ReportMetric(ms(lc.pct(.5))/ms(fc.pct(.5)), "change-ratio")
			}
		})
	}
}
