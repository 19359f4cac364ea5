package plugins

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RateLimitHeaders names the response headers in which a provider says when
// its rate limit resets, most specific first (e.g. Brevo's
// "x-sib-ratelimit-reset", then the common "x-ratelimit-reset"). See
// ParseRateLimitReset for the values understood.
type RateLimitHeaders []string

// HTTPStatusErrorWith is HTTPStatusError for providers that announce the end
// of a throttle in headers of their own: Retry-After wins when present,
// otherwise the first of h that parses is honoured on a 429 or 503 answer.
// On other statuses h is ignored, because many providers send their reset
// header on every answer and a 400 must stay permanent.
func HTTPStatusErrorWith(resp *http.Response, what string, h RateLimitHeaders) error {
	err := HTTPStatusError(resp, what)
	if _, ok := RetryAfterOf(err); ok {
		return err
	}
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return err
	}
	now := time.Now()
	for _, name := range h {
		if d, ok := ParseRateLimitReset(resp.Header.Get(name), now); ok {
			return RetryAfter(d, err)
		}
	}
	return err
}

// Thresholds that tell the kinds of number apart in ParseRateLimitReset.
const (
	// unixSecondsFrom is 2001-09-09 as Unix seconds: no throttle lasts
	// 31 years, so a larger number is a point in time, not a duration.
	unixSecondsFrom = 1_000_000_000
	// unixMillisFrom is the same instant in milliseconds.
	unixMillisFrom = 1_000_000_000_000
)

// ParseRateLimitReset reads a rate-limit reset header value, relative to now,
// and returns how long to wait (never negative). Providers disagree on the
// unit, so the magnitude decides:
//
//   - a number below 1e9 is seconds until the reset (fractions allowed):
//     "30", "0.5" (Brevo's x-sib-ratelimit-reset, IETF RateLimit-Reset);
//   - an integer from 1e9 to below 1e12 is the reset as Unix seconds
//     (GitHub's x-ratelimit-reset);
//   - an integer of 1e12 or more is the reset as Unix milliseconds;
//   - anything else is tried as an HTTP date ("Wed, 21 Oct 2026 07:28:00 GMT").
//
// A reset already in the past means "now" (0, true); an empty or
// unparsable value gives false.
func ParseRateLimitReset(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		switch {
		case n < 0:
			return 0, false
		case n < unixSecondsFrom:
			return time.Duration(n * float64(time.Second)), true
		case n < unixMillisFrom:
			return max(time.Unix(int64(n), 0).Sub(now), 0), true
		default:
			return max(time.UnixMilli(int64(n)).Sub(now), 0), true
		}
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// String lists the header names, for messages.
func (h RateLimitHeaders) String() string { return fmt.Sprint([]string(h)) }
