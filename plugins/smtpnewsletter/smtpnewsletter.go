// Package smtpnewsletter is the newsletter processor for self-hosters: it
// sends the double opt-in confirmation mail through any SMTP server
// (STARTTLS when offered) and keeps its own subscriber state, unconfirmed
// until the user follows the link, in the collection "plugin_<name>".
// State is keyed by the subject pseudonym and holds no address in clear
// (only a salted hash, to notice an address change).
//
// Users see PENDING_CONFIRMATION in their processor links after the mail
// went out, with a resendConfirmation action, and ACTIVE once they
// followed the link.
//
// Settings: smtpURL (required, as CONSENTGRAPH_SMTP_URL, with from=);
// optional listName, subject and text (the body, with {list} and {link}
// placeholders; the subject may use {list}), each a string or a mapping of
// language tag to string (plugins.Text); optional languages, the mail's
// languages in order. The processor never learns a user's language (its
// purpose gives it only the address), so one mail carries every language
// the settings give (English and Japanese by default), each text once,
// separated by a line; the subject joins them with " / ". See resolveTexts
// for how the languages and their order are decided.
package smtpnewsletter

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/consentgraph/consentgraph/internal/mail"
	"github.com/consentgraph/consentgraph/plugins"
)

// Type is the processor type name.
const Type = "smtp_newsletter"

func init() {
	plugins.Register(plugins.Manifest{
		Type: Type, Purpose: plugins.PurposeNewsletter,
		DataCategories: []string{plugins.CategoryEmail},
		Requires:       []string{plugins.CategoryEmail},
		Description:    "Newsletter through our own mail server, with double opt-in confirmation.",
		Actions: []plugins.Action{{ID: ActionResend, Title: "Resend the confirmation mail",
			Titles: map[string]string{"ja": "確認メールを再送する"}}},
	}, New)
}

// Subscriber is the stored state of one subscriber, kept in the
// instance's plugins.State under "s:" + subject; a pending confirmation
// token's hash maps back to the subject under "t:" + hash.
type Subscriber struct {
	Subject   string    `json:"subject"`
	Confirmed bool      `json:"confirmed"`
	TokenHash string    `json:"tokenHash,omitempty"`
	EmailHash string    `json:"emailHash"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Processor is an smtp_newsletter instance.
type Processor struct {
	env    plugins.Env
	sender *mail.Sender
	texts  *mailTexts
	state  plugins.State
}

// New builds an instance from its settings.
func New(env plugins.Env) (plugins.Processor, error) {
	var settings struct {
		SMTPURL   string       `setting:"smtpURL,required"`
		Subject   plugins.Text `setting:"subject"`
		ListName  plugins.Text `setting:"listName"`
		Text      plugins.Text `setting:"text"`
		Languages []string     `setting:"languages"`
	}
	if err := plugins.DecodeSettings(env, &settings); err != nil {
		return nil, err
	}
	cfg, err := mail.ParseURL(settings.SMTPURL)
	if err != nil {
		return nil, fmt.Errorf("settings.smtpURL: %w", err)
	}
	texts, err := resolveTexts(settings.Languages, settings.ListName, settings.Subject, settings.Text)
	if err != nil {
		return nil, err
	}
	if env.State == nil {
		return nil, errors.New("smtp_newsletter needs processor state")
	}
	return &Processor{env: env, sender: mail.New(cfg, env.Logger), texts: texts, state: env.State}, nil
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ActionResend is the action that mails a fresh confirmation link.
const ActionResend = "resendConfirmation"

// pending is the link status while the confirmation link was not followed.
var pending = plugins.LinkStatus{State: plugins.LinkPendingConfirmation, Actions: []string{ActionResend}}

// Deliver sends the confirmation mail unless this address already
// confirmed; a changed address must confirm again. The user sees
// PENDING_CONFIRMATION until the link is followed, then ACTIVE.
func (p *Processor) Deliver(ctx context.Context, r plugins.Request) (plugins.Result, error) {
	confirmed, err := p.sendConfirmation(ctx, r.ID, r.Subject, r.Fields[plugins.CategoryEmail])
	if err != nil {
		return plugins.Result{}, err
	}
	if confirmed {
		return plugins.Result{Link: &plugins.LinkStatus{State: plugins.LinkActive}}, nil
	}
	link := pending
	return plugins.Result{Link: &link}, nil
}

// Act implements plugins.Actor: resendConfirmation mails a new link (the
// older one stops working), unless the address is confirmed already.
func (p *Processor) Act(ctx context.Context, r plugins.ActionRequest) error {
	if r.Action != ActionResend {
		return plugins.Permanent(fmt.Errorf("smtp_newsletter: no action %q", r.Action))
	}
	_, err := p.sendConfirmation(ctx, r.ID, r.Subject, r.Fields[plugins.CategoryEmail])
	return err
}

// sendConfirmation mails a confirmation link to email for subject unless
// that address is confirmed already (then it reports confirmed and sends
// nothing). id is the work item's, so a repeated item's mail has the same
// Message-ID.
func (p *Processor) sendConfirmation(ctx context.Context, id, subject, email string) (confirmed bool, err error) {
	if email == "" {
		return false, plugins.Permanent(errors.New("smtp_newsletter: no email"))
	}
	emailHash := hashOf(subject, email)
	cur, err := p.Subscriber(ctx, subject)
	if err != nil {
		return false, err
	}
	if cur != nil && cur.Confirmed && cur.EmailHash == emailHash {
		return true, nil
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return false, err
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	// The token index first: a crash in between leaves a dangling token
	// that confirms nothing, never a subscriber whose link cannot work.
	if err := p.state.Put(ctx, "t:"+hashOf(token), []byte(subject)); err != nil {
		return false, fmt.Errorf("smtp_newsletter state: %w", err)
	}
	if cur != nil && cur.TokenHash != "" {
		_ = p.state.Delete(ctx, "t:"+cur.TokenHash) // the older link stops working
	}
	if err := p.put(ctx, &Subscriber{Subject: subject, TokenHash: hashOf(token), EmailHash: emailHash, UpdatedAt: time.Now().UTC()}); err != nil {
		return false, err
	}
	link := p.env.PublicURL + "/plugins/" + url.PathEscape(p.env.Name) + "/confirm?token=" + token
	msg := mail.Message{
		To:      email,
		Subject: p.texts.Subject(),
		Text:    p.texts.Body(link),
		Headers: map[string]string{"Message-ID": "<" + id + "@consentgraph.invalid>", "Auto-Submitted": "auto-generated"},
	}
	if err := p.sender.Send(ctx, msg); err != nil {
		if mail.IsPermanent(err) {
			return false, plugins.Permanent(err)
		}
		return false, err
	}
	return false, nil
}

// Forget removes the subscriber (unsubscribed or erased alike).
func (p *Processor) Forget(ctx context.Context, r plugins.Request) error {
	cur, err := p.Subscriber(ctx, r.Subject)
	if err != nil {
		return fmt.Errorf("smtp_newsletter forget: %w", err)
	}
	if cur != nil && cur.TokenHash != "" {
		if err := p.state.Delete(ctx, "t:"+cur.TokenHash); err != nil {
			return fmt.Errorf("smtp_newsletter forget: %w", err)
		}
	}
	if err := p.state.Delete(ctx, "s:"+r.Subject); err != nil {
		return fmt.Errorf("smtp_newsletter forget: %w", err)
	}
	return nil
}

// Confirm marks the subscriber whose mail carried token as confirmed.
func (p *Processor) Confirm(ctx context.Context, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	h := hashOf(token)
	subject, ok, err := p.state.Get(ctx, "t:"+h)
	if err != nil {
		return false, fmt.Errorf("smtp_newsletter confirm: %w", err)
	}
	if !ok {
		return false, nil
	}
	s, err := p.Subscriber(ctx, string(subject))
	if err != nil {
		return false, fmt.Errorf("smtp_newsletter confirm: %w", err)
	}
	if s == nil || s.TokenHash != h {
		return false, nil // forgotten, or a newer link was sent since
	}
	// Confirmed first, the token retired last: until then the same link
	// works again, so a failure in between is healed by following it once
	// more, and the user's status can never stay PENDING for good.
	if !s.Confirmed {
		s.Confirmed, s.UpdatedAt = true, time.Now().UTC()
		if err := p.put(ctx, s); err != nil {
			return false, fmt.Errorf("smtp_newsletter confirm: %w", err)
		}
	}
	// Without a link store (a unit test building the processor by hand)
	// there is nobody to tell.
	if p.env.Links != nil {
		if err := p.env.Links.Set(ctx, s.Subject, plugins.LinkStatus{State: plugins.LinkActive}); err != nil {
			return false, fmt.Errorf("smtp_newsletter confirm: %w", err)
		}
	}
	s.TokenHash = ""
	if err := p.put(ctx, s); err != nil {
		return false, fmt.Errorf("smtp_newsletter confirm: %w", err)
	}
	if err := p.state.Delete(ctx, "t:"+h); err != nil {
		return false, fmt.Errorf("smtp_newsletter confirm: %w", err)
	}
	return true, nil
}

// Subscriber returns the state kept for subject, or nil.
func (p *Processor) Subscriber(ctx context.Context, subject string) (*Subscriber, error) {
	raw, ok, err := p.state.Get(ctx, "s:"+subject)
	if err != nil {
		return nil, fmt.Errorf("smtp_newsletter state: %w", err)
	}
	if !ok {
		return nil, nil
	}
	var s Subscriber
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("smtp_newsletter state of %s: %w", subject, err)
	}
	return &s, nil
}

func (p *Processor) put(ctx context.Context, s *Subscriber) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("smtp_newsletter state: %w", err)
	}
	if err := p.state.Put(ctx, "s:"+s.Subject, raw); err != nil {
		return fmt.Errorf("smtp_newsletter state: %w", err)
	}
	return nil
}

// Handler serves GET confirm?token=... under /plugins/{name}/.
func (p *Processor) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || path(r) != "confirm" {
			http.NotFound(w, r)
			return
		}
		ok, err := p.Confirm(r.Context(), r.URL.Query().Get("token"))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case err != nil:
			http.Error(w, p.texts.page(pageError), http.StatusInternalServerError)
		case !ok:
			http.Error(w, p.texts.page(pageInvalid), http.StatusNotFound)
		default:
			_, _ = io.WriteString(w, p.texts.page(pageConfirmed)+"\n")
		}
	})
}

func path(r *http.Request) string {
	u := r.URL.Path
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] == '/' {
			return u[i+1:]
		}
	}
	return u
}
