package app_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/outbox"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
	"github.com/consentgraph/consentgraph/plugins/webhook"
)

// BenchmarkWebhookDeliveries measures deliveries per second through the
// whole outbox (claim, consent re-check, decrypt, pseudonym, sign, POST,
// disclosure) to a loopback receiver that verifies every Ed25519 signature
// against the JWKS, and to one that answers at once without verifying, in
// one run, and reports both and their ratio.
//
//	go test ./internal/app -run '^$' -bench WebhookDeliveries -benchtime 1x
func BenchmarkWebhookDeliveries(b *testing.B) {
	var keys atomic.Pointer[map[string]ed25519.PublicKey]
	var bad atomic.Int64
	verifying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		signed := webhook.SignedContent(r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body)
		k := (*keys.Load())[r.Header.Get("webhook-key-id")]
		sig, _ := strings.CutPrefix(strings.Fields(r.Header.Get("webhook-signature"))[0], "v1a,")
		raw, _ := base64.StdEncoding.DecodeString(sig)
		if k == nil || !ed25519.Verify(k, signed, raw) {
			bad.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer verifying.Close()
	instant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer instant.Close()

	path := filepath.Join(b.TempDir(), "config.yaml")
	yaml := fmt.Sprintf(`
processors:
  - {name: verified, type: webhook, purpose: surveys, fields: [user.demographic.country], settings: {url: %q}}
  - {name: instant, type: webhook, purpose: surveys, fields: [user.demographic.country], settings: {url: %q}}
`, verifying.URL, instant.URL)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	s := apptest.Start(b, func(c *config.Config) { c.ConfigFile, c.OutboxPoll = path, -1 })
	res, err := http.Get(s.URL + "/.well-known/jwks.json")
	if err != nil {
		b.Fatal(err)
	}
	var jwks struct{ Keys []struct{ Kid, X string } }
	_ = json.NewDecoder(res.Body).Decode(&jwks)
	_ = res.Body.Close()
	m := map[string]ed25519.PublicKey{}
	for _, k := range jwks.Keys {
		x, _ := base64.RawURLEncoding.DecodeString(k.X)
		m[k.Kid] = x
	}
	keys.Store(&m)

	const users, perRound = 16, 96
	var ids []string
	for i := range users {
		c := s.Register(b, fmt.Sprintf("bench%d", i))
		if r := c.Do(b, grantMutation, map[string]any{"p": "surveys"}); len(r.Errors) > 0 {
			b.Fatalf("grant: %s", r.Raw)
		}
		ids = append(ids, meIDB(b, c))
	}
	fmt.Fprintln(os.Stderr, "bench: users ready")
	ctx := context.Background()
	tuning := outbox.Tuning{PollInterval: time.Millisecond, Lease: 30 * time.Second, Batch: 64, Workers: 16}
	d := s.App.Outbox.Dispatcher("bench", tuning)
	// Let the grants' own items go first.
	for n := 1; n > 0; {
		n, _ = d.Once(ctx)
	}
	fmt.Fprintln(os.Stderr, "bench: grants delivered")
	round := func(processor string) float64 {
		queue := s.Store().Outbox()
		now := time.Now().UTC().Truncate(time.Millisecond)
		for i := range perRound {
			it := outbox.Item{ID: s.App.Outbox.NewID(), UserID: ids[i%users], Processor: processor, Purpose: "surveys",
				Action: outbox.Deliver, Cause: "bench", State: outbox.Pending, NextAt: now, CreatedAt: now, UpdatedAt: now}
			if ok, err := queue.Enqueue(ctx, it); err != nil || !ok {
				b.Fatalf("enqueue: %v, %v", ok, err)
			}
		}
		fmt.Fprintln(os.Stderr, "bench: round", processor)
		start := time.Now()
		for done := 0; done < perRound; {
			n, err := d.Once(ctx)
			if err != nil {
				b.Fatal(err)
			}
			done += n
			if debugBench {
				counts, _ := queue.CountByState(ctx)
				fmt.Fprintln(os.Stderr, "claimed", n, "done", done, "by state", counts)
			}
		}
		rate := perRound / time.Since(start).Seconds()
		// Start every round from the same table sizes, so that rounds
		// compare (FerretDB, the MongoDB test double, scans).
		for _, kind := range []struct{ table, collection string }{{"outbox_items", "outbox"}, {"disclosures", "disclosures"}} {
			storetest.Tamper(b, s.Store(), `DELETE FROM `+kind.table+` WHERE cause = 'bench'`, nil,
				func(ctx context.Context, db *mongo.Database) (int64, error) {
					r, err := db.Collection(kind.collection).DeleteMany(ctx, bson.D{{Key: "cause", Value: "bench"}})
					if err != nil {
						return 0, err
					}
					return r.DeletedCount, nil
				})
		}
		return rate
	}
	var signed, fast float64
	for b.Loop() {
		fast = round("instant") // first, so that warm-up favours the verifying receiver if anything
		signed = round("verified")
	}
	if bad.Load() > 0 {
		b.Fatalf("%d signatures did not verify", bad.Load())
	}
	b.ReportMetric(signed, "verified-deliveries/s")
	b.ReportMetric(fast, "instant-deliveries/s")
	b.ReportMetric(signed/fast, "ratio")
	fmt.Printf("webhook deliveries/s: receiver verifying signatures %.0f, answering instantly %.0f, ratio %.2f\n", signed, fast, signed/fast)
}

var debugBench = os.Getenv("DEBUG_BENCH") != ""

func meIDB(b *testing.B, c *apptest.Client) string {
	var me struct{ Me struct{ ID string } }
	c.Do(b, `{ me { id } }`, nil).Decode(b, &me)
	return me.Me.ID
}
