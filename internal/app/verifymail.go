package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/consentgraph/consentgraph/internal/mail"
)

// verificationMailer sends email verification links through the configured
// SMTP server. Without one, the address stays unverified; in --dev the link
// is logged so local developers can still follow it.
type verificationMailer struct {
	sender    *mail.Sender
	publicURL string
	dev       bool
	log       *slog.Logger
}

func newVerificationMailer(smtpURL, publicURL string, dev bool, log *slog.Logger) (*verificationMailer, error) {
	m := &verificationMailer{publicURL: publicURL, dev: dev, log: log}
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

func (m *verificationMailer) SendVerification(ctx context.Context, to, token string) {
	link := m.publicURL + "/?verify=" + url.QueryEscape(token)
	if m.sender == nil {
		if m.dev {
			m.log.InfoContext(ctx, "no SMTP server configured; email verification link", "link", link)
		} else {
			m.log.WarnContext(ctx, "no SMTP server configured (CONSENTGRAPH_SMTP_URL); verification mail not sent")
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := m.sender.Send(ctx, mail.Message{
		To:      to,
		Subject: "Confirm your email address",
		Text: "Someone — hopefully you — added this address to a Consentgraph account.\n\n" +
			"To confirm it, open:\n" + link + "\n\nor enter this code in the Privacy Center:\n" + token + "\n\n" +
			"If this was not you, ignore this mail; the address stays unconfirmed and receives nothing.\n",
	})
	if err != nil {
		m.log.ErrorContext(ctx, "sending verification mail failed", "err", err, "request_id", RequestID(ctx))
	}
}
