package plugintest_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/consentgraph/consentgraph/plugins"
	"github.com/consentgraph/consentgraph/plugins/plugintest"
)

// store is a provider fake: PUT/DELETE /c/{subject}, 429 from the recorder.
type store struct {
	mu   sync.Mutex
	held map[string]bool
	puts int
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	subject := strings.TrimPrefix(r.URL.Path, "/c/")
	switch r.Method {
	case http.MethodPut:
		if !s.held[subject] {
			s.puts++
		}
		s.held[subject] = true
	case http.MethodDelete:
		delete(s.held, subject)
	}
}

// proc is a small HTTP processor; with forgetNeedsRef it has the bug the
// kit must catch: a forget without Ref does nothing.
type proc struct {
	base           string
	client         *http.Client
	forgetNeedsRef bool
}

func (p *proc) call(ctx context.Context, method, subject string) error {
	req, err := http.NewRequestWithContext(ctx, method, p.base+"/c/"+subject, nil)
	if err != nil {
		return plugins.Permanent(err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
		return plugins.HTTPStatusError(resp, method)
	}
	return nil
}

func (p *proc) Deliver(ctx context.Context, r plugins.Request) (plugins.Result, error) {
	return plugins.Result{Ref: r.Subject}, p.call(ctx, http.MethodPut, r.Subject)
}

func (p *proc) Forget(ctx context.Context, r plugins.Request) error {
	if p.forgetNeedsRef && r.Ref == "" {
		return nil
	}
	return p.call(ctx, http.MethodDelete, r.Subject)
}

func register(typ string, forgetNeedsRef bool) {
	plugins.Register(plugins.Manifest{Type: typ, Purpose: plugins.PurposeNewsletter, DataCategories: []string{plugins.CategoryEmail}},
		func(env plugins.Env) (plugins.Processor, error) {
			var cfg struct {
				BaseURL string `setting:"baseURL,required"`
			}
			if err := plugins.DecodeSettings(env, &cfg); err != nil {
				return nil, err
			}
			return &proc{base: cfg.BaseURL, client: env.HTTPClient, forgetNeedsRef: forgetNeedsRef}, nil
		})
}

func init() {
	register("kit-good", false)
	register("kit-broken", true)
}

func options(typ string) plugintest.Options {
	s := &store{held: map[string]bool{}}
	return plugintest.Options{
		Type: typ, Provider: s,
		Settings: func(baseURL string) map[string]any { return map[string]any{"baseURL": baseURL} },
		Holds:    func(r plugins.Request) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.held[r.Subject] },
		Effects:  func() int { s.mu.Lock(); defer s.mu.Unlock(); return s.puts },
	}
}

func TestConformancePassesAConformingPlugin(t *testing.T) {
	plugintest.Conformance(t, options("kit-good"))
}

// The kit is only worth something if it fails: run it on the broken
// plugin in a child process and expect the failure it must report.
func TestConformanceCatchesABrokenPlugin(t *testing.T) {
	if os.Getenv("PLUGINTEST_CHILD") == "1" {
		plugintest.Conformance(t, options("kit-broken"))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestConformanceCatchesABrokenPlugin$", "-test.v")
	cmd.Env = append(os.Environ(), "PLUGINTEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("Conformance passed a plugin that ignores forgets without Ref:\n%s", out)
	}
	for _, want := range []string{"--- FAIL: TestConformanceCatchesABrokenPlugin/forget-empty-ref", "left the user at the provider", "--- PASS: TestConformanceCatchesABrokenPlugin/erase"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}

func TestRecorderScripts(t *testing.T) {
	rec := plugintest.NewRecorder(t, nil)
	rec.Respond(plugintest.RateLimited("x-sib-ratelimit-reset", "3"), plugintest.Response{Status: 404, Body: `{"detail":"no"}`})
	get := func() *http.Response {
		t.Helper()
		resp, err := http.Post(rec.URL+"/a?b=1", "text/plain", strings.NewReader("hi"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get(); r.StatusCode != 429 || r.Header.Get("X-Sib-Ratelimit-Reset") != "3" {
		t.Errorf("first: %d %v", r.StatusCode, r.Header)
	}
	if r := get(); r.StatusCode != 404 {
		t.Errorf("second: %d", r.StatusCode)
	}
	if r := get(); r.StatusCode != 200 {
		t.Errorf("after the script: %d", r.StatusCode)
	}
	got := rec.Requests()
	if len(got) != 3 || got[0].RequestURI != "/a?b=1" || string(got[0].Body) != "hi" || got[0].Method != "POST" {
		t.Errorf("recorded %+v", got)
	}
	st := plugintest.NewMemoryState()
	ctx := context.Background()
	_ = st.Put(ctx, "k", []byte("v"))
	if v, ok, _ := st.Get(ctx, "k"); !ok || string(v) != "v" {
		t.Error("state lost a value")
	}
	_ = st.Delete(ctx, "k")
	if _, ok, _ := st.Get(ctx, "k"); ok || len(st.Keys()) != 0 {
		t.Error("state kept a deleted value")
	}
}
