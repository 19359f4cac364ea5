package app_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// BenchmarkMeVersusDriver measures `query { me { id username } }` through the
// whole HTTP stack (session lookup, GraphQL, decryption-free fields) against
// a raw driver FindOne of the same user document on the same store,
// interleaved in one loop so both see the same machine load. It reports
// both latencies and their ratio.
func BenchmarkMeVersusDriver(b *testing.B) {
	s := apptest.Start(b)
	c := s.Register(b, "benchmark-user")
	var me struct{ Me struct{ ID string } }
	c.Do(b, `{ me { id } }`, nil).Decode(b, &me)
	users := s.DB().Collection("users")
	body := []byte(`{"query":"query { me { id username } }"}`)
	client := &http.Client{}
	ctx := context.Background()
	var api, raw time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.Token)
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		t1 := time.Now()
		var doc bson.M
		if err := users.FindOne(ctx, bson.D{{Key: "_id", Value: me.Me.ID}}).Decode(&doc); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		api += t1.Sub(t0)
		raw += t2.Sub(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(api.Microseconds())/n, "me-µs/op")
	b.ReportMetric(float64(raw.Microseconds())/n, "findone-µs/op")
	b.ReportMetric(float64(api)/float64(raw), "ratio")
}
