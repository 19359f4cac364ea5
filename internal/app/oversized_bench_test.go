package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2"

	"github.com/consentgraph/consentgraph/graph"
	"github.com/consentgraph/consentgraph/internal/app/apptest"
)

// BenchmarkOversizedQuery measures, through the server's own handler (no
// network), the time to refuse the anonymous 64 KiB document of repeated
// `policy { version }`
// against the time to parse, validate and run the Privacy Center's page
// query the server has not seen before (a fresh comment each time defeats
// the query cache), interleaved in one loop so both see the same load. It
// reports both and their ratio, and once the time gqlparser needs to
// validate the oversized document, which is what it cost before the cap.
//
//	go test -run '^$' -bench OversizedQuery -benchtime 200x -count 3 ./internal/app/
func BenchmarkOversizedQuery(b *testing.B) {
	s := apptest.Start(b)
	h := s.App.Handler()
	big := oversized(64<<10-100, false)
	serve := func(body []byte) []byte {
		req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Body.Bytes()
	}
	if out := serve(big); !bytes.Contains(out, []byte("QUERY_TOO_LARGE")) {
		b.Fatalf("not refused: %.200s", out)
	}
	page := `query Me { me { id username email emailVerified profile { birthYear country gender language }
  consents { granted needsRenewal updatedAt method policyVersion notes
    purpose { id mechanism description dataCategories processors { name description dataCategories } } }
  consentHistory(first: 100) { totalCount edges { node { sequence purpose action at method policyVersion } } } ledgerIntact
  disclosures(first: 50) { edges { node { processor purpose fields action at } } } } }`
	var refuse, normal time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		serve(big)
		t1 := time.Now()
		out := serve(fmt.Appendf(nil, `{"query":%q}`, fmt.Sprintf("%s # %d", page, i)))
		t2 := time.Now()
		if bytes.Contains(out, []byte(`"errors"`)) {
			b.Fatalf("page query: %s", out)
		}
		refuse, normal, i = refuse+t1.Sub(t0), normal+t2.Sub(t1), i+1
	}
	b.StopTimer()
	b.ReportMetric(float64(refuse.Microseconds())/float64(i), "µs/refuse-64KiB")
	b.ReportMetric(float64(normal.Microseconds())/float64(i), "µs/new-page-query")
	b.ReportMetric(float64(refuse)/float64(normal), "refuse/page")

	// What validating the oversized document costs without the cap.
	schema, gerr := gqlparser.LoadSchema(graph.SchemaSources()...)
	if gerr != nil {
		b.Fatal(gerr)
	}
	var q struct{ Query string }
	if err := json.Unmarshal(big, &q); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	_, _ = gqlparser.LoadQuery(schema, q.Query)
	b.ReportMetric(float64(time.Since(t0).Milliseconds()), "ms/validate-64KiB-uncapped")
}
