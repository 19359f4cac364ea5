package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	netmail "net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"
)

// Sender delivers messages through the configured SMTP server, one
// connection per message. It is safe for concurrent use.
type Sender struct {
	cfg     Config
	from    *netmail.Address
	fromErr error
	logger  *slog.Logger
	helo    string // from config or this host's FQDN; empty: address literal
}

// New returns a Sender for cfg. A nil logger discards logs. An invalid cfg
// is reported by every Send (ParseURL already rejects invalid URLs).
func New(cfg Config, logger *slog.Logger) *Sender {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSOpportunistic
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	s := &Sender{cfg: cfg, logger: logger.With("component", "mail")}
	s.from, s.fromErr = cfg.validate()
	s.helo = cfg.HeloName
	if s.helo == "" {
		if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") && validHeloName(h) {
			s.helo = h
		}
	}
	return s
}

// Send builds msg and delivers it. It returns only once the server has
// accepted the message (250 after DATA) or the attempt failed; the error
// is an *Error and [IsPermanent] tells whether a retry can help. Send
// never takes longer than ctx allows (or Config.Timeout without deadline).
// An invalid message is rejected before any connection is made.
func (s *Sender) Send(ctx context.Context, msg Message) error {
	if s.fromErr != nil {
		return &Error{Op: "config", Err: fmt.Errorf("invalid mail configuration: %w", s.fromErr)}
	}
	b, err := build(s.from, msg, time.Now())
	if err != nil {
		return err
	}
	start := time.Now()
	// No part of the recipient is logged, not even the domain: addresses are
	// personal data, and a personal domain names its owner. The message id
	// is enough to find the mail at the SMTP server.
	log := s.logger.With("message_id", b.messageID)
	tlsUsed, err := s.deliver(ctx, b)
	if err != nil {
		// Servers often quote the recipient in their replies.
		logged := redactRecipient(err.Error(), b.to)
		log.WarnContext(ctx, "mail not sent", "error", logged, "permanent", IsPermanent(err),
			"duration", time.Since(start))
		return err
	}
	log.InfoContext(ctx, "mail sent", "tls", tlsUsed, "bytes", len(b.data), "duration", time.Since(start))
	return nil
}

func (s *Sender) tlsConfig() *tls.Config {
	return &tls.Config{
		ServerName:         s.cfg.Host,
		RootCAs:            s.cfg.RootCAs,
		InsecureSkipVerify: s.cfg.InsecureSkipVerify, //nolint:gosec // opt-in for test servers
		MinVersion:         tls.VersionTLS12,
	}
}

// deliver runs the SMTP dialog for one message and reports whether the
// connection was encrypted.
func (s *Sender) deliver(ctx context.Context, b *built) (tlsUsed bool, err error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(s.cfg.Timeout)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	// fail wraps a step's error; after a deadline or cancellation the
	// context's error is wrapped too, so errors.Is(err, ctx.Err()) holds.
	fail := func(op string, err error) error {
		e := &Error{Op: op, Err: err}
		var tp *textproto.Error
		if errors.As(err, &tp) {
			e.Code = tp.Code
			e.Permanent = tp.Code >= 500 && tp.Code < 600
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			e.Err = fmt.Errorf("%w: %w", cerr, err)
		} else if errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
			// The connection deadline is the context deadline.
			e.Err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return e
	}

	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, fail("dial", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return false, fail("dial", err)
	}
	// Cancellation interrupts any blocked read or write at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	helo := s.helo
	if helo == "" {
		helo = addressLiteral(conn.LocalAddr())
	}

	if s.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, s.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return false, fail("tls", err)
		}
		conn = tc
	}

	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		return false, fail("greeting", err)
	}
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return false, fail("ehlo", err)
	}
	// Hello sends EHLO (falling back to HELO) with our name.
	hasStartTLS, _ := c.Extension("STARTTLS")
	_, tlsUsed = c.TLSConnectionState()

	if !tlsUsed && s.cfg.TLS != TLSImplicit {
		switch {
		case hasStartTLS:
			if err := c.StartTLS(s.tlsConfig()); err != nil {
				return false, fail("starttls", err)
			}
			tlsUsed = true
		case s.cfg.TLS == TLSRequired:
			// Possibly stripped by an attacker: transient, not permanent.
			return false, fail("starttls", errors.New("server does not offer STARTTLS but starttls=required"))
		}
	}

	if s.cfg.Username != "" {
		if !tlsUsed && !isLoopback(s.cfg.Host) {
			return tlsUsed, fail("auth", fmt.Errorf("refusing to send credentials to %s without TLS (server did not offer STARTTLS)", s.cfg.Host))
		}
		ok, mechs := c.Extension("AUTH")
		if !ok || !hasWord(mechs, "PLAIN") {
			return tlsUsed, fail("auth", fmt.Errorf("server does not offer AUTH PLAIN (offers %q)", mechs))
		}
		if err := c.Auth(plainAuth{user: s.cfg.Username, pass: s.cfg.Password}); err != nil {
			return tlsUsed, fail("auth", err)
		}
	}

	if ok, param := c.Extension("SIZE"); ok {
		if limit, err := strconv.Atoi(strings.TrimSpace(param)); err == nil && limit > 0 && len(b.data) > limit {
			return tlsUsed, &Error{Op: "mail", Permanent: true,
				Err: fmt.Errorf("message of %d bytes exceeds the server's limit of %d", len(b.data), limit)}
		}
	}

	if err := c.Mail(b.from); err != nil {
		return tlsUsed, fail("mail", err)
	}
	if err := c.Rcpt(b.to); err != nil {
		return tlsUsed, fail("rcpt", err)
	}
	w, err := c.Data()
	if err != nil {
		return tlsUsed, fail("data", err)
	}
	if _, err := w.Write(b.data); err != nil {
		return tlsUsed, fail("data", err)
	}
	if err := w.Close(); err != nil {
		return tlsUsed, fail("data", err)
	}
	// The message is accepted; a failing QUIT must not cause a resend.
	_ = c.Quit()
	return tlsUsed, nil
}

// plainAuth is AUTH PLAIN (RFC 4616). The TLS-or-loopback rule is checked
// by deliver before it is used; unlike smtp.PlainAuth this also accepts
// loopback addresses other than 127.0.0.1 and ::1.
type plainAuth struct{ user, pass string }

func (a plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge during AUTH PLAIN")
	}
	return nil, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func hasWord(list, word string) bool {
	for _, w := range strings.Fields(list) {
		if strings.EqualFold(w, word) {
			return true
		}
	}
	return false
}

// addressLiteral is the EHLO argument for a host without a usable name.
func addressLiteral(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta.IP == nil {
		return "localhost"
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return "[" + ip4.String() + "]"
	}
	return "[IPv6:" + ta.IP.String() + "]"
}

// redactRecipient removes the recipient's address and its domain from a
// server reply before it is logged.
func redactRecipient(text, to string) string {
	text = strings.ReplaceAll(text, to, "<recipient>")
	if _, domain, ok := strings.Cut(to, "@"); ok && domain != "" {
		text = strings.ReplaceAll(text, domain, "<domain>")
	}
	return text
}
