package app_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/outbox"
)

// A realistic flow — sign-up with email and profile, a profile change, a
// consent that a processor then receives, an export, a partner's
// demographics query — leaves spans for the operations, their resolvers,
// the store calls and the delivery, linked into one trace per request,
// and not one attribute or span name holds the username, email, password,
// session token, user id or any variable value.
func TestTracesHoldNoPersonalData(t *testing.T) {
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer receiver.Close()
	path := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf("processors:\n  - name: hook\n    type: webhook\n    purpose: surveys\n    fields: [user.contact.email, user.demographic.country]\n    settings: {url: %q}\n", receiver.URL)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	cfg := apptest.ConfigOn(t, apptest.Kind())
	cfg.ConfigFile, cfg.OutboxPoll, cfg.Tracing = path, 10*time.Millisecond, tp
	cfg.AdminUsername, cfg.AdminPassword = "trace-admin", "trace admin password"
	s := apptest.StartWith(t, cfg)

	const (
		username = "traced-person"
		password = "correct horse battery"
		email    = "traced.mailbox@example.net"
	)
	c := s.Client()
	var reg struct {
		Register struct {
			Token string
			User  struct{ ID string }
		}
	}
	r := c.Do(t, `mutation Register($in: RegisterInput!) { register(input: $in) { token user { id } } }`, map[string]any{"in": map[string]any{
		"username": username, "password": password, "email": email,
		"profile": map[string]any{"birthYear": 1964, "country": "IS", "gender": "OTHER", "language": "is"},
	}})
	r.Decode(t, &reg)
	c.Token = reg.Register.Token
	for _, q := range []struct {
		query string
		vars  map[string]any
	}{
		{`mutation Profile($c: String) { updateProfile(input: {country: $c, language: "fo"}) { id } }`, map[string]any{"c": "FO"}},
		{`mutation Grant { grantConsent(purpose: "surveys") { receipt } }`, nil},
		{`query Me { me { id username email profile { country } consents { purpose { id } granted } } }`, nil},
		{`query Export { exportMyData { document signature } }`, nil},
	} {
		if r := c.Do(t, q.query, q.vars); len(r.Errors) > 0 {
			t.Fatalf("%s: %s", q.query, r.Raw)
		}
	}
	waitFor(t, func() bool { return len(items(t, s, outbox.Done)) >= 1 }, "the delivery to the processor")

	admin := s.Client()
	var login struct{ Login struct{ Token string } }
	admin.Do(t, `mutation { login(username: "trace-admin", password: "trace admin password") { token } }`, nil).Decode(t, &login)
	admin.Token = login.Login.Token
	_, partner := createPartner(t, s, admin, 5, 30)
	if r := partner.Do(t, `query Stats { demographics(groupBy: [COUNTRY], epsilon: 0.5) { epsilon } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	s.Close() // every span ended

	got := spans.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, sp := range got {
		byID[sp.SpanContext.SpanID()] = sp
	}
	find := func(pred func(tracetest.SpanStub) bool) []tracetest.SpanStub {
		var out []tracetest.SpanStub
		for _, sp := range got {
			if pred(sp) {
				out = append(out, sp)
			}
		}
		return out
	}
	named := func(name string) tracetest.SpanStub {
		t.Helper()
		m := find(func(sp tracetest.SpanStub) bool { return sp.Name == name })
		if len(m) == 0 {
			var names []string
			for _, sp := range got {
				names = append(names, sp.Name)
			}
			t.Fatalf("no span %q among %q", name, names)
		}
		return m[0]
	}
	// ancestors walks up the parents recorded in this process.
	ancestors := func(sp tracetest.SpanStub) []string {
		var names []string
		for p, ok := byID[sp.Parent.SpanID()]; ok; p, ok = byID[p.Parent.SpanID()] {
			names = append(names, p.Name)
		}
		return names
	}
	has := func(list []string, name string) bool {
		for _, n := range list {
			if n == name {
				return true
			}
		}
		return false
	}

	// (1) the shape: HTTP span > operation > resolver > store call, one trace.
	me := named("query Me")
	if p := byID[me.Parent.SpanID()]; p.Name != "POST /graphql" || p.SpanContext.TraceID() != me.SpanContext.TraceID() {
		t.Errorf("operation span's parent is %q, want the request's POST /graphql", p.Name)
	}
	resolver := find(func(sp tracetest.SpanStub) bool {
		return sp.Name == "Query.me" && sp.Parent.SpanID() == me.SpanContext.SpanID()
	})
	if len(resolver) == 0 {
		t.Fatal("no Query.me resolver span under query Me")
	}
	if find(func(sp tracetest.SpanStub) bool { return sp.Name == "User.consents" && has(ancestors(sp), "query Me") }) == nil {
		t.Error("no resolver span for User.consents under query Me")
	}
	store := find(func(sp tracetest.SpanStub) bool {
		return sp.SpanContext.TraceID() == me.SpanContext.TraceID() && has(ancestors(sp), "Query.me") &&
			(strings.HasPrefix(sp.Name, "sqlite ") || strings.HasPrefix(sp.Name, "mongodb "))
	})
	if len(store) == 0 {
		t.Error("no store span under the Query.me resolver")
	}
	for _, op := range []string{"mutation Register", "mutation Profile", "mutation Grant", "query Export", "query Stats"} {
		sp := named(op)
		if len(find(func(c tracetest.SpanStub) bool { return c.Parent.SpanID() == sp.SpanContext.SpanID() })) == 0 {
			t.Errorf("%s has no child spans", op)
		}
	}
	delivery := find(func(sp tracetest.SpanStub) bool {
		return sp.Name == "outbox deliver hook" && attr(sp, "outbox.outcome") == "done" && attr(sp, "outbox.action") != ""
	})
	if len(delivery) == 0 {
		t.Fatal("no outbox delivery span with outcome done")
	}
	d := delivery[0]
	if len(find(func(sp tracetest.SpanStub) bool {
		return has(ancestors(sp), d.Name) && sp.SpanContext.TraceID() == d.SpanContext.TraceID()
	})) == 0 {
		t.Error("the delivery span has no store spans inside it")
	}
	for _, sp := range got {
		if p, ok := byID[sp.Parent.SpanID()]; ok && p.SpanContext.TraceID() != sp.SpanContext.TraceID() {
			t.Errorf("span %q is in another trace than its parent %q", sp.Name, p.Name)
		}
	}

	// (2) nothing personal anywhere in the spans.
	secrets := []string{username, password, email, "traced.mailbox", "example.net", reg.Register.Token, reg.Register.User.ID, "1964"}
	exact := []string{"IS", "FO", "fo", "is", "OTHER"} // short values: an exact match only
	if reg.Register.Token == "" || reg.Register.User.ID == "" {
		t.Fatal("registration returned no token or id; the check below would prove less")
	}
	for _, sp := range got {
		values := []string{sp.Name, sp.Status.Description}
		for _, kv := range sp.Attributes {
			values = append(values, kv.Value.Emit())
		}
		for _, ev := range sp.Events {
			values = append(values, ev.Name)
			for _, kv := range ev.Attributes {
				values = append(values, kv.Value.Emit())
			}
		}
		for _, v := range values {
			for _, secret := range secrets {
				if strings.Contains(v, secret) {
					t.Errorf("span %q holds %q in %q", sp.Name, secret, v)
				}
			}
			for _, secret := range exact {
				if v == secret {
					t.Errorf("span %q holds the variable value %q", sp.Name, secret)
				}
			}
		}
	}
	if len(got) < 30 {
		t.Errorf("only %d spans: the flow above makes far more", len(got))
	}
}

func attr(sp tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range sp.Attributes {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, the real OTLP/HTTP exporter posts
// the spans of a request, as protobuf, to /v1/traces of the collector it
// names (here a fake one answering as the OTLP/HTTP spec says), with the
// default service name.
func TestTracesExportedOverOTLP(t *testing.T) {
	var mu sync.Mutex
	var reqs []*collectortrace.ExportTraceServiceRequest
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		reqs = append(reqs, &req)
		mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	defer collector.Close()

	cfg := apptest.ConfigOn(t, apptest.Kind())
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}
	cfg.Getenv = func(k string) string { return env[k] }
	s := apptest.StartWith(t, cfg)
	if r := s.Client().Do(t, `query Anonymous { me { id } }`, nil); len(r.Errors) > 0 {
		t.Fatal(string(r.Raw))
	}
	s.Close() // shuts the provider down, which flushes the batch

	mu.Lock()
	defer mu.Unlock()
	var names []string
	service := ""
	for _, req := range reqs {
		for _, rs := range req.ResourceSpans {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					names = append(names, sp.Name)
				}
			}
		}
	}
	if !bytes.Contains([]byte(strings.Join(names, "\n")), []byte("query Anonymous")) {
		t.Fatalf("collector received spans %q, want the operation's", names)
	}
	if service != "consentgraph" {
		t.Errorf("service.name %q, want the default consentgraph", service)
	}
}
