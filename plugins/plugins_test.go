package plugins

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestHTTPStatusClassification(t *testing.T) {
	for code, permanent := range map[int]bool{400: true, 401: true, 404: true, 410: true, 408: false, 429: false, 500: false, 503: false} {
		err := HTTPStatusError(&http.Response{StatusCode: code, Header: http.Header{}}, "x")
		if IsPermanent(err) != permanent {
			t.Errorf("HTTP %d: permanent %v, want %v", code, IsPermanent(err), permanent)
		}
	}
	h := http.Header{}
	h.Set("Retry-After", "7")
	err := HTTPStatusError(&http.Response{StatusCode: 429, Header: h}, "x")
	if d, ok := RetryAfterOf(err); !ok || d != 7*time.Second || IsPermanent(err) {
		t.Errorf("429 Retry-After: %v %v", d, ok)
	}
	if IsPermanent(errors.New("x")) {
		t.Error("a plain error is permanent")
	}
}
