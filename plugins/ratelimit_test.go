package plugins_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
)

func TestParseRateLimitReset(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30", 30 * time.Second, true},                           // seconds until reset (Brevo)
		{"0.5", 500 * time.Millisecond, true},                    // fractional seconds
		{"0", 0, true},                                           // resets now
		{" 12 ", 12 * time.Second, true},                         // whitespace
		{"1777636860", time.Minute, true},                        // Unix seconds (now + 60s)
		{"1777636860000", time.Minute, true},                     // Unix milliseconds
		{"1777636000", 0, true},                                  // a reset in the past: now
		{"Fri, 01 May 2026 12:02:00 GMT", 2 * time.Minute, true}, // HTTP date
		{"", 0, false},
		{"-3", 0, false},
		{"soon", 0, false},
	}
	for _, c := range cases {
		got, ok := plugins.ParseRateLimitReset(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseRateLimitReset(%q) = %s, %v; want %s, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestHTTPStatusErrorWith(t *testing.T) {
	h := plugins.RateLimitHeaders{"x-sib-ratelimit-reset", "x-ratelimit-reset"}
	resp := func(status int, hdr map[string]string) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		return r
	}
	// Brevo: 429 with seconds until the reset.
	err := plugins.HTTPStatusErrorWith(resp(429, map[string]string{"x-sib-ratelimit-reset": "7"}), "brevo", h)
	if d, ok := plugins.RetryAfterOf(err); !ok || d != 7*time.Second || plugins.IsPermanent(err) {
		t.Errorf("429 with x-sib-ratelimit-reset: 7 gave %v (wait %s, %v)", err, d, ok)
	}
	// The second name is tried when the first is absent.
	err = plugins.HTTPStatusErrorWith(resp(503, map[string]string{"x-ratelimit-reset": "2"}), "x", h)
	if d, ok := plugins.RetryAfterOf(err); !ok || d != 2*time.Second {
		t.Errorf("503 with x-ratelimit-reset: 2 gave %v", err)
	}
	// Retry-After wins over the named headers.
	err = plugins.HTTPStatusErrorWith(resp(429, map[string]string{"Retry-After": "1", "x-sib-ratelimit-reset": "50"}), "x", h)
	if d, _ := plugins.RetryAfterOf(err); d != time.Second {
		t.Errorf("Retry-After: 1 with a reset of 50s waited %s", d)
	}
	// A 400 carrying the reset header (sent on every answer) stays permanent.
	err = plugins.HTTPStatusErrorWith(resp(400, map[string]string{"x-sib-ratelimit-reset": "5"}), "x", h)
	if _, ok := plugins.RetryAfterOf(err); ok || !plugins.IsPermanent(err) {
		t.Errorf("400 with a reset header gave %v; want permanent", err)
	}
	// A 429 without any header is retried with the usual backoff.
	err = plugins.HTTPStatusErrorWith(resp(429, nil), "x", h)
	if _, ok := plugins.RetryAfterOf(err); ok || plugins.IsPermanent(err) {
		t.Errorf("bare 429 gave %v", err)
	}
}
