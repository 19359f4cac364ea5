package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/consentgraph/consentgraph/internal/mail"
)

// verificationMailer sends the account mails (verification links, address
// in use, password resets) through the configured SMTP server. Without one,
// the address stays unverified and no reset is possible; in --dev the
// links are logged so local developers can still follow them.
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
	m.send(ctx, "verification", link, mail.Message{
		To:      to,
		Subject: "Confirm your email address",
		Text: "Someone — hopefully you — added this address to a Consentgraph account.\n\n" +
			"To confirm it, open:\n" + link + "\n\nor enter this code in the Privacy Center:\n" + token + "\n\n" +
			"If this was not you, ignore this mail; the address stays unconfirmed and receives nothing.\n",
	})
}

func (m *verificationMailer) SendAddressInUse(ctx context.Context, to string) {
	m.send(ctx, "address in use", "", mail.Message{
		To:      to,
		Subject: "Someone tried to add your email address to an account",
		Text: "Someone added this address to a Consentgraph account, but it is already confirmed on another\n" +
			"account — probably yours. Nothing changed: the address stays yours, and the other account cannot\n" +
			"confirm it or receive anything at it.\n\n" +
			"If this was you, sign in to the account that has the address, or remove it there first.\n" +
			"If you have forgotten that account's password, use \"Forgot password\" in the Privacy Center.\n",
	})
}

func (m *verificationMailer) SendPasswordReset(ctx context.Context, to, token string) {
	link := m.publicURL + "/?reset=" + url.QueryEscape(token)
	m.send(ctx, "password reset", link, mail.Message{
		To:      to,
		Subject: "Reset your password",
		Text: "Someone — hopefully you — asked to reset the password of the Consentgraph account with this address.\n\n" +
			"To choose a new password, open:\n" + link + "\n\nor enter this code in the Privacy Center:\n" + token + "\n\n" +
			"The code works once, for a short while. Every session of the account ends when it is used.\n" +
			"If this was not you, ignore this mail; your password stays as it is.\n",
	})
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
