package app_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
)

// mailpits remembers the Mailpit each server mails through, so helpers can
// read what it sent.
var mailpits sync.Map // *apptest.Server -> *mailpittest.Server

// startWithMail starts a server that mails through a Mailpit of its own.
func startWithMail(t *testing.T, opts ...apptest.Option) (*apptest.Server, *mailpittest.Server) {
	t.Helper()
	mp := mailpittest.Start(t)
	opts = append([]apptest.Option{func(c *config.Config) { c.SMTPURL = mp.SMTPURL() }}, opts...)
	s := apptest.Start(t, opts...)
	mailpits.Store(s, mp)
	t.Cleanup(func() { mailpits.Delete(s) })
	return s, mp
}

// tokenIn returns the first word of the mail's text that starts with prefix.
func tokenIn(t *testing.T, m mailpittest.Message, prefix string) string {
	t.Helper()
	i := strings.Index(m.Text, prefix)
	if i < 0 {
		t.Fatalf("no %s token in mail %q: %q", prefix, m.Subject, m.Text)
	}
	return strings.Fields(m.Text[i:])[0]
}

// verifyMailed follows the verification mail sent to addr on server s.
func verifyMailed(t *testing.T, s *apptest.Server, addr string) {
	t.Helper()
	v, ok := mailpits.Load(s)
	if !ok {
		t.Fatal("the server was not started with a Mailpit (startWithMail)")
	}
	token := tokenIn(t, v.(*mailpittest.Server).WaitFor(t, addr, 15*time.Second), "cgv_")
	var out struct{ VerifyEmail bool }
	s.Client().Do(t, `mutation($t: String!) { verifyEmail(token: $t) }`, map[string]any{"t": token}).Decode(t, &out)
	if !out.VerifyEmail {
		t.Fatalf("verifyEmail of %s answered false", addr)
	}
}
