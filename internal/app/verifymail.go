package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/i18n"
	"github.com/consentgraph/consentgraph/internal/mail"
)

// verificationMailer sends the account mails (verification links, address
// in use, password resets) through the configured SMTP server. Without one,
// the address stays unverified and no reset is possible; in --dev the
// links are logged so local developers can still follow them.
//
// Each mail is written in the recipient's language: their profile's
// language if it has a catalogue, else the language of the request that
// caused the mail (Accept-Language), else English.
type verificationMailer struct {
	sender    *mail.Sender
	publicURL string
	dev       bool
	log       *slog.Logger
	texts     *i18n.Bundle
	// service names the operator in the mails (the controller's name).
	service  string
	resetTTL time.Duration
}

func newVerificationMailer(smtpURL, publicURL string, dev bool, log *slog.Logger, texts *i18n.Bundle, service string, resetTTL time.Duration) (*verificationMailer, error) {
	m := &verificationMailer{publicURL: publicURL, dev: dev, log: log, texts: texts, service: service, resetTTL: resetTTL}
	if smtpURL == "" {
		return m, nil
	}
	cfg, err := mail.ParseURL(smtpURL)
	if err != nil {
		return nil, fmt.Errorf("CONSENTGRAPH_SMTP_URL: %w", err)
	}
	m.sender = mail.New(cfg, log)
	return m, nil
}

// language is the recipient's language if it has a catalogue, else the
// request's.
func (m *verificationMailer) language(ctx context.Context, to accounts.Recipient) string {
	return m.texts.Pick(to.Language, i18n.FromContext(ctx))
}

// compose writes the mail kind ("mail.<kind>.subject" and ".body") to
// the recipient in lang.
func (m *verificationMailer) compose(lang string, to accounts.Recipient, kind string, params i18n.Params) mail.Message {
	params["service"] = m.service
	return mail.Message{
		To:      to.Email,
		Subject: m.texts.T(lang, "mail."+kind+".subject", params),
		Text:    m.texts.T(lang, "mail."+kind+".body", params) + "\n" + m.texts.T(lang, "mail.signature", params) + "\n",
		// Tells mail clients (and tests) the language of the text.
		Headers: map[string]string{"Content-Language": lang},
	}
}

func (m *verificationMailer) SendVerification(ctx context.Context, to accounts.Recipient, token string) {
	link := m.publicURL + "/?verify=" + url.QueryEscape(token)
	m.send(ctx, "verification", link, m.compose(m.language(ctx, to), to, "verify", i18n.Params{"link": link, "code": token}))
}

func (m *verificationMailer) SendAddressInUse(ctx context.Context, to accounts.Recipient) {
	m.send(ctx, "address in use", "", m.compose(m.language(ctx, to), to, "addressInUse", i18n.Params{}))
}

func (m *verificationMailer) SendPasswordReset(ctx context.Context, to accounts.Recipient, token string) {
	link := m.publicURL + "/?reset=" + url.QueryEscape(token)
	lang := m.language(ctx, to)
	expiry := m.texts.T(lang, "mail.reset.expiry", i18n.Params{"count": int(m.resetTTL.Round(time.Minute) / time.Minute)})
	m.send(ctx, "password reset", link, m.compose(lang, to, "reset", i18n.Params{"link": link, "code": token, "expiry": expiry}))
}

// send delivers msg, or logs the link (if any) when there is no SMTP
// server in --dev. A failed mail is logged: the flow that asked for it
// goes on, and the user can ask again.
func (m *verificationMailer) send(ctx context.Context, kind, link string, msg mail.Message) {
	if m.sender == nil {
		if m.dev && link != "" {
			m.log.InfoContext(ctx, "no SMTP server configured; "+kind+" link", "link", link)
		} else {
			m.log.WarnContext(ctx, "no SMTP server configured (CONSENTGRAPH_SMTP_URL); mail not sent", "kind", kind)
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.sender.Send(ctx, msg); err != nil {
		m.log.ErrorContext(ctx, "sending mail failed", "kind", kind, "err", err, "request_id", RequestID(ctx))
	}
}
