package loadtest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRefusesNonLoopbackTargets(t *testing.T) {
	for _, target := range []string{"http://10.0.0.1:8080", "http://192.168.1.2", "https://example.org", "not a url"} {
		if err := CheckLoopback(target); err == nil {
			t.Errorf("%s accepted", target)
		}
	}
	for _, target := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"} {
		if err := CheckLoopback(target); err != nil {
			t.Errorf("%s refused: %v", target, err)
		}
	}
	if _, err := Run(context.Background(), Options{Target: "http://10.1.2.3", Clients: 1, Users: 1, Duration: time.Second, MaxRequests: 1}); err == nil {
		t.Error("Run accepted a private-range target")
	}
}

func TestParseMix(t *testing.T) {
	m, err := ParseMix("signin=1, me=10,consent=0")
	if err != nil || m[OpMe] != 10 || m[OpConsent] != 0 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"me", "me=-1", "delete=1", "me=x"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A short real run against an in-process server: every operation of the
// mix is exercised, the run stops at its request bound, and nothing fails.
func TestShortRunAgainstRealServer(t *testing.T) {
	var out bytes.Buffer
	err := Main([]string{"--clients", "3", "--users", "3", "--requests", "150", "--duration", "60s",
		"--mix", "signin=1,me=4,consent=2,partner=1"}, func(string) string { return "" }, &out, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	report := out.String()
	t.Log(report)
	for _, want := range []string{"signin", "me ", "consent", "partner", "throughput:", "server peak RSS:"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !strings.Contains(report, "all             150       0") {
		t.Errorf("want exactly 150 requests and no errors in:\n%s", report)
	}
}
