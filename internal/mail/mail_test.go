package mail_test

import (
	"context"
	"errors"
	"mime"
	"net"
	netmail "net/mail"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/consentgraph/consentgraph/internal/mail"
	"github.com/consentgraph/consentgraph/internal/mail/mailpittest"
)

func newSender(t *testing.T, rawURL string, edit ...func(*mail.Config)) *mail.Sender {
	t.Helper()
	cfg, err := mail.ParseURL(rawURL)
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", rawURL, err)
	}
	for _, e := range edit {
		e(&cfg)
	}
	return mail.New(cfg, nil)
}

func send(t *testing.T, s *mail.Sender, msg mail.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Send(ctx, msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// normBody undoes the transport's line endings for comparison.
func normBody(s string) string {
	return strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
}

func assertNoMessages(t *testing.T, srv *mailpittest.Server) {
	t.Helper()
	// Give a message that was wrongly sent a moment to show up.
	time.Sleep(200 * time.Millisecond)
	list, err := srv.Messages(context.Background())
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if len(list) != 0 {
		t.Fatalf("expected no message to arrive, got %d (first: %q)", len(list), list[0].Subject)
	}
}

func TestSendPlainText(t *testing.T) {
	srv := mailpittest.Start(t)
	s := newSender(t, srv.SMTPURL())
	body := "Hello,\n\nplease confirm your subscription:\nhttps://example.org/confirm?t=abc\n\n.\n.. a line starting with dots\n-- \nConsentgraph"
	send(t, s, mail.Message{
		To:      "Alice Example <alice@example.org>",
		Subject: "Please confirm your subscription",
		Text:    body,
		Headers: map[string]string{
			"List-Unsubscribe": "<https://example.org/unsubscribe?t=abc>",
			"Auto-Submitted":   "auto-generated",
		},
	})

	got := srv.WaitFor(t, "alice@example.org", 10*time.Second)
	if got.Subject != "Please confirm your subscription" {
		t.Errorf("subject = %q", got.Subject)
	}
	if got.From.Address != "noreply@consentgraph.test" || got.From.Name != "Consentgraph Test" {
		t.Errorf("from = %+v", got.From)
	}
	if len(got.To) != 1 || got.To[0].Address != "alice@example.org" || got.To[0].Name != "Alice Example" {
		t.Errorf("to = %+v", got.To)
	}
	if normBody(got.Text) != body {
		t.Errorf("text body = %q, want %q", normBody(got.Text), body)
	}
	if got.HTML != "" {
		t.Errorf("unexpected HTML body %q", got.HTML)
	}
	if got.Username != "" {
		t.Errorf("authenticated as %q without credentials", got.Username)
	}

	if v := got.Header("MIME-Version"); v != "1.0" {
		t.Errorf("MIME-Version = %q", v)
	}
	if v := got.Header("Content-Type"); v != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", v)
	}
	if _, err := netmail.ParseDate(got.Header("Date")); err != nil {
		t.Errorf("Date %q: %v", got.Header("Date"), err)
	} else if d, _ := netmail.ParseDate(got.Header("Date")); time.Since(d).Abs() > time.Minute {
		t.Errorf("Date %q is not now", got.Header("Date"))
	}
	mid := got.Header("Message-ID")
	if !strings.HasPrefix(mid, "<") || !strings.HasSuffix(mid, "@consentgraph.test>") {
		t.Errorf("Message-ID = %q", mid)
	}
	if v := got.Header("List-Unsubscribe"); v != "<https://example.org/unsubscribe?t=abc>" {
		t.Errorf("List-Unsubscribe = %q", v)
	}
	if v := got.Header("Auto-Submitted"); v != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", v)
	}
	if strings.Contains(string(got.Raw), "\n\n") && !strings.Contains(string(got.Raw), "\r\n\r\n") {
		t.Errorf("raw message does not use CRLF line endings")
	}
}

func TestSendUTF8RoundTrip(t *testing.T) {
	srv := mailpittest.Start(t)
	s := newSender(t, srv.SMTPURL())

	cases := []struct {
		name, to, subject, text, wantCTE string
	}{
		{
			name:    "mostly ASCII uses quoted-printable",
			to:      "qp@example.org",
			subject: "Bestätigen Sie Ihre Anmeldung – ✓ Grüße aus Köln, a subject long enough to need folding over several lines",
			text:    "Grüße aus Köln! Ein Satz mit Umlauten: äöü ÄÖÜ ß, ein Emoji 🎉 und ein Gleichheitszeichen = hier.\n" + strings.Repeat("long line ", 120),
			wantCTE: "quoted-printable",
		},
		{
			name:    "mostly non-ASCII uses base64",
			to:      "b64@example.org",
			subject: "Подтвердите подписку 日本語の件名も大丈夫です",
			text:    "Здравствуйте!\nПожалуйста, подтвердите подписку.\n日本語のテキスト。",
			wantCTE: "base64",
		},
		{
			name:    "ASCII that looks like an encoded word",
			to:      "ew@example.org",
			subject: "=?utf-8?q?not_an_encoded_word?= really",
			text:    "plain",
			wantCTE: "7bit",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			send(t, s, mail.Message{To: tc.to, Subject: tc.subject, Text: tc.text})
			got := srv.WaitFor(t, tc.to, 10*time.Second)
			if got.Subject != tc.subject {
				t.Errorf("subject = %q, want %q", got.Subject, tc.subject)
			}
			if normBody(got.Text) != normBody(tc.text) {
				t.Errorf("text = %q, want %q", got.Text, tc.text)
			}
			if v := got.Header("Content-Transfer-Encoding"); v != tc.wantCTE {
				t.Errorf("Content-Transfer-Encoding = %q, want %q", v, tc.wantCTE)
			}
			for i, line := range strings.Split(string(got.Raw), "\r\n") {
				if len(line) > 998 {
					t.Errorf("raw line %d is %d characters long", i, len(line))
				}
				for _, r := range line {
					if r > 127 {
						t.Fatalf("raw line %d has non-ASCII %q: message is not 7-bit clean", i, line)
					}
				}
			}
		})
	}
}

func TestSendHTMLAlternative(t *testing.T) {
	srv := mailpittest.Start(t)
	s := newSender(t, srv.SMTPURL())
	text := "Confirm: https://example.org/c?t=1"
	html := `<!doctype html><html><body><p>Bitte <a href="https://example.org/c?t=1">bestätigen</a> ✓</p></body></html>`
	send(t, s, mail.Message{To: "html@example.org", Subject: "HTML", Text: text, HTML: html})

	got := srv.WaitFor(t, "html@example.org", 10*time.Second)
	if normBody(got.Text) != text {
		t.Errorf("text = %q", got.Text)
	}
	if normBody(got.HTML) != html {
		t.Errorf("html = %q, want %q", got.HTML, html)
	}
	if ct := got.Header("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative; boundary=") {
		t.Errorf("Content-Type = %q", ct)
	}
	raw := string(got.Raw)
	if strings.Index(raw, "text/plain") > strings.Index(raw, "text/html") {
		t.Errorf("text/plain part must come before text/html (last part is preferred)")
	}
}

func TestCustomHeaders(t *testing.T) {
	srv := mailpittest.Start(t, mailpittest.WithoutTLS())
	s := newSender(t, srv.SMTPURL())
	send(t, s, mail.Message{
		To: "hdr@example.org", Subject: "headers", Text: "x",
		Headers: map[string]string{
			"Message-ID": "<outbox-42@consentgraph.test>",
			"Reply-To":   "Support Team <support@example.org>",
			"X-Note":     "Grüße",
		},
	})
	got := srv.WaitFor(t, "hdr@example.org", 10*time.Second)
	if got.MessageID != "outbox-42@consentgraph.test" {
		t.Errorf("MessageID = %q", got.MessageID)
	}
	if v := got.Header("Reply-To"); v != `"Support Team" <support@example.org>` {
		t.Errorf("Reply-To = %q", v)
	}
	xnote := got.Header("X-Note")
	if !strings.HasPrefix(xnote, "=?utf-8?") {
		t.Errorf("X-Note = %q, want an encoded-word", xnote)
	}
	if v, err := new(mime.WordDecoder).DecodeHeader(xnote); err != nil || v != "Grüße" {
		t.Errorf("X-Note %q decodes to %q (%v)", xnote, v, err)
	}

	for name, hdrs := range map[string]map[string]string{
		"reserved":          {"From": "evil@example.org"},
		"reserved any case": {"content-TYPE": "text/html"},
		"bad name":          {"X Bad": "v"},
		"bad message id":    {"Message-ID": "no-brackets@x"},
		"duplicate":         {"X-A": "1", "x-a": "2"},
	} {
		err := s.Send(context.Background(), mail.Message{To: "hdr@example.org", Subject: "s", Text: "t", Headers: hdrs})
		if !errors.Is(err, mail.ErrInvalidMessage) || !mail.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent ErrInvalidMessage", name, err)
		}
	}
}

func TestSTARTTLS(t *testing.T) {
	t.Run("used when offered", func(t *testing.T) {
		// This Mailpit rejects MAIL FROM before STARTTLS: arrival proves it.
		srv := mailpittest.Start(t, mailpittest.RequireSTARTTLS())
		s := newSender(t, srv.SMTPURL())
		send(t, s, mail.Message{To: "tls@example.org", Subject: "over TLS", Text: "secret"})
		srv.WaitFor(t, "tls@example.org", 10*time.Second)
	})

	t.Run("certificate verified with RootCAs and credentials sent", func(t *testing.T) {
		srv := mailpittest.Start(t, mailpittest.RequireSTARTTLS())
		u, _ := url.Parse(srv.SMTPURL())
		q := u.Query()
		q.Del("insecure_skip_verify")
		q.Set("starttls", "required")
		u.RawQuery = q.Encode()
		u.User = url.UserPassword("mailer", "p@ss word")
		s := newSender(t, u.String(), func(c *mail.Config) { c.RootCAs = srv.RootCAs() })
		assertAuthenticates(t, srv, s, "verified@example.org")
	})

	t.Run("unknown certificate is a transient error", func(t *testing.T) {
		srv := mailpittest.Start(t)
		u, _ := url.Parse(srv.SMTPURL())
		q := u.Query()
		q.Del("insecure_skip_verify")
		u.RawQuery = q.Encode()
		err := newSender(t, u.String()).Send(context.Background(), mail.Message{To: "x@example.org", Subject: "s", Text: "t"})
		var me *mail.Error
		if !errors.As(err, &me) || me.Op != "starttls" || mail.IsPermanent(err) {
			t.Fatalf("err = %v, want transient starttls error", err)
		}
		assertNoMessages(t, srv)
	})

	t.Run("required but not offered", func(t *testing.T) {
		srv := mailpittest.Start(t, mailpittest.WithoutTLS())
		s := newSender(t, srv.SMTPURL()+"&starttls=required")
		err := s.Send(context.Background(), mail.Message{To: "plain@example.org", Subject: "s", Text: "t"})
		if err == nil || mail.IsPermanent(err) || !strings.Contains(err.Error(), "STARTTLS") {
			t.Fatalf("err = %v, want transient STARTTLS error", err)
		}
		assertNoMessages(t, srv)
	})

	t.Run("opportunistic without TLS on offer sends in plain text", func(t *testing.T) {
		srv := mailpittest.Start(t, mailpittest.WithoutTLS())
		s := newSender(t, srv.SMTPURL())
		send(t, s, mail.Message{To: "plain@example.org", Subject: "plain", Text: "t"})
		srv.WaitFor(t, "plain@example.org", 10*time.Second)
	})

	t.Run("credentials to loopback without TLS", func(t *testing.T) {
		srv := mailpittest.Start(t, mailpittest.WithoutTLS())
		u, _ := url.Parse(srv.SMTPURL())
		u.User = url.UserPassword("local", "pw")
		assertAuthenticates(t, srv, newSender(t, u.String()), "local@example.org")
	})

	t.Run("no AUTH without credentials", func(t *testing.T) {
		srv := mailpittest.Start(t)
		ctx := context.Background()
		if err := srv.SetChaos(ctx, mailpittest.Chaos{Authentication: mailpittest.ChaosTrigger{ErrorCode: 535, Probability: 100}}); err != nil {
			t.Fatal(err)
		}
		send(t, newSender(t, srv.SMTPURL()), mail.Message{To: "anon@example.org", Subject: "s", Text: "t"})
		srv.WaitFor(t, "anon@example.org", 10*time.Second)
	})
}

// assertAuthenticates shows that s sends AUTH (Mailpit's chaos makes AUTH
// fail with 535) and that, once AUTH succeeds, the message is delivered.
func assertAuthenticates(t *testing.T, srv *mailpittest.Server, s *mail.Sender, to string) {
	t.Helper()
	ctx := context.Background()
	msg := mail.Message{To: to, Subject: "authenticated", Text: "t"}
	if err := srv.SetChaos(ctx, mailpittest.Chaos{Authentication: mailpittest.ChaosTrigger{ErrorCode: 535, Probability: 100}}); err != nil {
		t.Fatal(err)
	}
	err := s.Send(ctx, msg)
	var me *mail.Error
	if !errors.As(err, &me) || me.Op != "auth" || me.Code != 535 || !mail.IsPermanent(err) {
		t.Fatalf("with AUTH failing: err = %v, want permanent auth error 535", err)
	}
	if err := srv.SetChaos(ctx, mailpittest.Chaos{}); err != nil {
		t.Fatal(err)
	}
	send(t, s, msg)
	srv.WaitFor(t, to, 10*time.Second)
}

func TestImplicitTLS(t *testing.T) {
	srv := mailpittest.Start(t, mailpittest.ImplicitTLS())
	if !strings.HasPrefix(srv.SMTPURL(), "smtps://") {
		t.Fatalf("SMTPURL = %s", srv.SMTPURL())
	}
	s := newSender(t, srv.SMTPURL())
	send(t, s, mail.Message{To: "smtps@example.org", Subject: "implicit", Text: "x"})
	srv.WaitFor(t, "smtps@example.org", 10*time.Second)
}

func TestServerReplies(t *testing.T) {
	srv := mailpittest.Start(t)
	s := newSender(t, srv.SMTPURL())
	ctx := context.Background()
	msg := mail.Message{To: "chaos@example.org", Subject: "s", Text: "t"}

	if err := srv.SetChaos(ctx, mailpittest.Chaos{Recipient: mailpittest.ChaosTrigger{ErrorCode: 550, Probability: 100}}); err != nil {
		t.Fatal(err)
	}
	err := s.Send(ctx, msg)
	var me *mail.Error
	if !errors.As(err, &me) || me.Code != 550 || me.Op != "rcpt" || !mail.IsPermanent(err) {
		t.Fatalf("550 on RCPT: err = %v, want permanent rcpt error with code 550", err)
	}

	if err := srv.SetChaos(ctx, mailpittest.Chaos{Sender: mailpittest.ChaosTrigger{ErrorCode: 451, Probability: 100}}); err != nil {
		t.Fatal(err)
	}
	err = s.Send(ctx, msg)
	if !errors.As(err, &me) || me.Code != 451 || me.Op != "mail" || mail.IsPermanent(err) {
		t.Fatalf("451 on MAIL: err = %v, want transient mail error with code 451", err)
	}
	assertNoMessages(t, srv)

	if err := srv.SetChaos(ctx, mailpittest.Chaos{}); err != nil {
		t.Fatal(err)
	}
	send(t, s, msg)
	srv.WaitFor(t, "chaos@example.org", 10*time.Second)
}

// countingListener accepts connections, counts them and runs serve on each;
// connections still open are closed when the test ends.
func countingListener(t *testing.T, serve func(net.Conn)) (addr string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go serve(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), accepted
}

func urlFor(addr string) string {
	return "smtp://" + addr + "?from=noreply@example.org"
}

func TestHeaderInjectionRejectedWithoutSending(t *testing.T) {
	addr, accepted := countingListener(t, func(c net.Conn) { c.Close() })
	s := newSender(t, urlFor(addr))
	cases := map[string]mail.Message{
		"CRLF in To":            {To: "victim@example.org\r\nBcc: other@example.org", Subject: "s", Text: "t"},
		"LF in To":              {To: "victim@example.org\nBcc: other@example.org", Subject: "s", Text: "t"},
		"CRLF in Subject":       {To: "a@example.org", Subject: "hi\r\nBcc: other@example.org", Text: "t"},
		"bare CR in Subject":    {To: "a@example.org", Subject: "hi\rBcc: x", Text: "t"},
		"LF in header value":    {To: "a@example.org", Subject: "s", Text: "t", Headers: map[string]string{"X-A": "1\nBcc: x@example.org"}},
		"CRLF in header name":   {To: "a@example.org", Subject: "s", Text: "t", Headers: map[string]string{"X-A\r\nBcc": "x@example.org"}},
		"NUL in subject":        {To: "a@example.org", Subject: "a\x00b", Text: "t"},
		"two recipients":        {To: "a@example.org, b@example.org", Subject: "s", Text: "t"},
		"no domain":             {To: "alice", Subject: "s", Text: "t"},
		"empty recipient":       {To: "", Subject: "s", Text: "t"},
		"non-ASCII address":     {To: "jürgen@example.org", Subject: "s", Text: "t"},
		"empty body":            {To: "a@example.org", Subject: "s"},
		"invalid UTF-8 body":    {To: "a@example.org", Subject: "s", Text: "\xff\xfe"},
		"invalid UTF-8 subject": {To: "a@example.org", Subject: "\xff", Text: "t"},
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			err := s.Send(context.Background(), msg)
			if err == nil {
				t.Fatal("Send accepted an invalid message")
			}
			if !errors.Is(err, mail.ErrInvalidMessage) || !mail.IsPermanent(err) {
				t.Fatalf("err = %v, want permanent ErrInvalidMessage", err)
			}
		})
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections were made for invalid messages", n)
	}

	if _, err := mail.ParseURL(urlFor(addr) + "%0D%0ABcc:%20x@example.org"); err == nil {
		t.Errorf("ParseURL accepted a from= with CRLF")
	}
}

func TestUnreachableServerIsTransient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now

	s := newSender(t, urlFor(addr))
	err = s.Send(context.Background(), mail.Message{To: "a@example.org", Subject: "s", Text: "t"})
	var me *mail.Error
	if !errors.As(err, &me) || me.Op != "dial" {
		t.Fatalf("err = %v, want dial error", err)
	}
	if mail.IsPermanent(err) {
		t.Fatalf("connection refused reported as permanent: %v", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("network error not wrapped: %v", err)
	}
}

func TestContextIsHonoured(t *testing.T) {
	// A server that accepts and then never says anything.
	addr, _ := countingListener(t, func(c net.Conn) {})
	msg := mail.Message{To: "a@example.org", Subject: "s", Text: "t"}

	t.Run("deadline", func(t *testing.T) {
		s := newSender(t, urlFor(addr))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := s.Send(ctx, msg)
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Fatalf("Send took %s with a 300ms deadline", elapsed)
		}
		if !errors.Is(err, context.DeadlineExceeded) || mail.IsPermanent(err) {
			t.Fatalf("err = %v, want transient context.DeadlineExceeded", err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		s := newSender(t, urlFor(addr))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		err := s.Send(ctx, msg)
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Fatalf("Send took %s after cancel at 200ms", elapsed)
		}
		if !errors.Is(err, context.Canceled) || mail.IsPermanent(err) {
			t.Fatalf("err = %v, want transient context.Canceled", err)
		}
	})

	t.Run("config timeout without deadline", func(t *testing.T) {
		s := newSender(t, urlFor(addr)+"&timeout=300ms")
		start := time.Now()
		err := s.Send(context.Background(), msg)
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Fatalf("Send took %s with timeout=300ms", elapsed)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("already expired", func(t *testing.T) {
		s := newSender(t, urlFor(addr))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Send(ctx, msg); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestParseURL(t *testing.T) {
	good := []struct {
		raw  string
		want mail.Config
	}{
		{
			raw: "smtp://user:pass@mail.example.org:587?from=Consentgraph%20<noreply@example.org>",
			want: mail.Config{Host: "mail.example.org", Port: 587, Username: "user", Password: "pass",
				From: "Consentgraph <noreply@example.org>", TLS: mail.TLSOpportunistic},
		},
		{
			raw:  "smtp://mail.example.org?from=noreply@example.org",
			want: mail.Config{Host: "mail.example.org", Port: 587, From: "noreply@example.org", TLS: mail.TLSOpportunistic},
		},
		{
			raw:  "smtps://u%40x:p%3Aa%2Fss@mail.example.org?from=noreply@example.org",
			want: mail.Config{Host: "mail.example.org", Port: 465, Username: "u@x", Password: "p:a/ss", From: "noreply@example.org", TLS: mail.TLSImplicit},
		},
		{
			raw:  "smtps://mail.example.org:2465/?from=noreply@example.org&insecure_skip_verify=true",
			want: mail.Config{Host: "mail.example.org", Port: 2465, From: "noreply@example.org", TLS: mail.TLSImplicit, InsecureSkipVerify: true},
		},
		{
			raw:  "SMTP://[::1]:25?from=a@b.example&starttls=required&helo=app.example.org&timeout=15s",
			want: mail.Config{Host: "::1", Port: 25, From: "a@b.example", TLS: mail.TLSRequired, HeloName: "app.example.org", Timeout: 15 * time.Second},
		},
		{
			raw:  "smtp://127.0.0.1:1025?from=a@b.example&starttls=opportunistic&insecure_skip_verify=false",
			want: mail.Config{Host: "127.0.0.1", Port: 1025, From: "a@b.example", TLS: mail.TLSOpportunistic},
		},
		{
			raw:  "smtp://relay:25?from=%22B%C3%BCro%22%20<a@b.example>&helo=[192.0.2.1]",
			want: mail.Config{Host: "relay", Port: 25, From: `"Büro" <a@b.example>`, TLS: mail.TLSOpportunistic, HeloName: "[192.0.2.1]"},
		},
	}
	for _, tc := range good {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := mail.ParseURL(tc.raw)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}

	bad := []struct{ raw, wantErr string }{
		{"", "empty"},
		{"mail.example.org:587", "scheme"},
		{"http://mail.example.org?from=a@b.example", `unsupported SMTP URL scheme "http"`},
		{"smtp+tls://mail.example.org?from=a@b.example", "unsupported SMTP URL scheme"},
		{"smtp://?from=a@b.example", "no host"},
		{"smtp://mail.example.org:0?from=a@b.example", `invalid SMTP port "0"`},
		{"smtp://mail.example.org:70000?from=a@b.example", `invalid SMTP port "70000"`},
		{"smtp://user:secretpw@mail.example.org:port?from=a@b.example", "invalid port"},
		{"smtp://mail.example.org:?from=a@b.example", "empty port"},
		{"smtp://mail.example.org", "needs a from="},
		{"smtp://mail.example.org?from=", "needs a from="},
		{"smtp://mail.example.org?from=not-an-address", "invalid from="},
		{"smtp://mail.example.org?from=a@b.example%0D%0ABcc:x@y.example", "line break"},
		{"smtp://mail.example.org?from=j%C3%BCrgen@b.example", "non-ASCII"},
		{"smtp://mail.example.org?from=a@b.example&from=c@d.example", "more than once"},
		{"smtp://mail.example.org?from=a@b.example&starttls=always", "invalid starttls"},
		{"smtps://mail.example.org?from=a@b.example&starttls=required", "does not apply to smtps"},
		{"smtp://mail.example.org?from=a@b.example&insecure_skip_verify=maybe", "invalid insecure_skip_verify"},
		{"smtp://mail.example.org?from=a@b.example&tls=true", `unknown SMTP URL option "tls"`},
		{"smtp://mail.example.org?from=a@b.example&timeout=-1s", "invalid timeout"},
		{"smtp://mail.example.org?from=a@b.example&helo=bad%20name", "invalid helo"},
		{"smtp://mail.example.org/path?from=a@b.example", "must not have a path"},
		{"smtp://:secretpw@mail.example.org?from=a@b.example", "password but no user"},
	}
	for _, tc := range bad {
		t.Run(tc.raw, func(t *testing.T) {
			_, err := mail.ParseURL(tc.raw)
			if err == nil {
				t.Fatalf("ParseURL(%q) succeeded, want error containing %q", tc.raw, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error leaks the password: %q", err)
			}
		})
	}
}

func TestConfigStringRedactsPassword(t *testing.T) {
	cfg, err := mail.ParseURL("smtp://user:secretpw@mail.example.org:2525?from=a@b.example&starttls=required")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.String()
	if strings.Contains(s, "secretpw") {
		t.Fatalf("String() leaks the password: %s", s)
	}
	back, err := mail.ParseURL(s)
	if err != nil {
		t.Fatalf("String() is not a valid URL: %v", err)
	}
	if back.Host != cfg.Host || back.Port != cfg.Port || back.TLS != cfg.TLS || back.From != cfg.From {
		t.Fatalf("String() round trip: %#v", back)
	}
	if !strings.Contains(s, ":"+strconv.Itoa(2525)) {
		t.Errorf("String() = %s", s)
	}
}
