// Package plugintest is the processor plugin conformance kit: an HTTP
// recorder to stand in front of a fake of the provider's API, an Env
// builder with an in-memory State and a test Signer, and Conformance,
// which checks that a processor keeps the promises the outbox relies on
// (idempotent repeats, forgetting unknown users and users whose Ref was
// lost, erasure, rate limits, cancellation).
//
// It depends only on the public plugins package and the standard library,
// so a plugin in a module of its own can use it:
//
//	func TestConformance(t *testing.T) {
//		plugintest.Conformance(t, plugintest.Options{
//			Type:     "contacts",
//			Provider: newFakeContactsAPI(), // follows the provider's documented API
//			Settings: func(baseURL string) map[string]any {
//				return map[string]any{"baseURL": baseURL, "token": "t"}
//			},
//		})
//	}
package plugintest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Recorded is one request the Recorder received.
type Recorded struct {
	Method string
	// Path is the URL path, RequestURI the path with its query.
	Path       string
	RequestURI string
	Header     http.Header
	Body       []byte
}

// Response is a scripted answer (see Recorder.Respond).
type Response struct {
	Status int
	Header http.Header
	Body   string
	// Hang holds the request until the client gives up (its context is
	// cancelled or it times out), or for at most 30 seconds: it tests
	// that a processor honours cancellation.
	Hang bool
}

// Recorder is an httptest server that records every request and answers
// with scripted responses first, then with its Handler (a fake of the
// provider's API; without one, 200 with an empty JSON object).
type Recorder struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:41234.
	URL string

	srv     *httptest.Server
	handler http.Handler

	mu       sync.Mutex
	requests []Recorded
	script   []Response
}

// NewRecorder starts a Recorder in front of handler (nil: answer 200 {})
// and closes it when the test ends.
func NewRecorder(t testing.TB, handler http.Handler) *Recorder {
	t.Helper()
	r := &Recorder{handler: handler}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL
	t.Cleanup(r.srv.Close)
	return r
}

// Respond queues answers given, in order, to the next requests instead of
// the handler's.
func (r *Recorder) Respond(rs ...Response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = append(r.script, rs...)
}

// RateLimited is a 429 answer carrying header: value, e.g.
// RateLimited("Retry-After", "7") or RateLimited("x-sib-ratelimit-reset", "7").
func RateLimited(header, value string) Response {
	return Response{Status: http.StatusTooManyRequests, Header: http.Header{header: {value}}}
}

// Requests returns a copy of what was received so far.
func (r *Recorder) Requests() []Recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Recorded, len(r.requests))
	copy(out, r.requests)
	return out
}

// Reset forgets the recorded requests and any unused scripted answers.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests, r.script = nil, nil
}

func (r *Recorder) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.requests = append(r.requests, Recorded{
		Method: req.Method, Path: req.URL.Path, RequestURI: req.URL.RequestURI(), Header: req.Header.Clone(), Body: body,
	})
	var next *Response
	if len(r.script) > 0 {
		next = &r.script[0]
		r.script = r.script[1:]
	}
	r.mu.Unlock()
	switch {
	case next == nil && r.handler != nil:
		r.handler.ServeHTTP(w, req)
	case next == nil:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	case next.Hang:
		select {
		case <-req.Context().Done():
		case <-time.After(30 * time.Second):
		}
		w.WriteHeader(http.StatusGatewayTimeout)
	default:
		for k, vs := range next.Header {
			w.Header()[http.CanonicalHeaderKey(k)] = vs
		}
		status := next.Status
		if status == 0 {
			status = http.StatusOK
		}
		if next.Body != "" && w.Header().Get("Content-Type") == "" && strings.HasPrefix(strings.TrimSpace(next.Body), "{") {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, next.Body)
	}
}
