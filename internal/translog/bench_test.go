package translog_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/store/storetest"
	"github.com/consentgraph/consentgraph/internal/translog"
)

// BenchmarkLogAtOneMillion fills a log on the embedded store with a
// million leaves (timed as one append rate), then measures what the
// service asks of it per request: a checkpoint-sized head read plus one
// inclusion proof, and a consistency proof.
//
//	go test ./internal/translog -run '^$' -bench LogAtOneMillion -benchtime 2000x
func BenchmarkLogAtOneMillion(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	st := storetest.Open(b, "embedded")
	_, key, _ := ed25519.GenerateKey(nil)
	l, err := translog.New(translog.Options{Store: st.Translog(), Signer: signer{key}})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	const batch = 10_000
	for from := 0; from < n; from += batch {
		items := make([]translog.Item, batch)
		for i := range items {
			id := from + i
			items[i] = translog.Item{ID: fmt.Sprintf("audit/%020d", id+1), Data: translog.Commitment(translog.KindAudit, fmt.Sprint(id+1), fmt.Sprintf("%064x", id), time.Unix(int64(id), 0)), At: time.Unix(int64(id), 0)}
		}
		if err := l.Ensure(ctx, items); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("appended %d leaves in %s (%.0f leaves/s)", n, time.Since(start).Round(time.Millisecond), n/time.Since(start).Seconds())
	b.Run("inclusion-proof", func(b *testing.B) {
		for i := range b.N {
			id := fmt.Sprintf("audit/%020d", 1+(i*7919)%n)
			ps, err := l.InclusionProofs(ctx, []string{id})
			if err != nil || len(ps) != 1 || len(ps[id].Hashes) == 0 {
				b.Fatalf("%v %v", err, ps)
			}
		}
	})
	b.Run("consistency-proof", func(b *testing.B) {
		for i := range b.N {
			m := int64(1 + (i*104729)%(n-1))
			if _, err := l.ConsistencyProof(ctx, m, n); err != nil {
				b.Fatal(err)
			}
		}
	})
}
