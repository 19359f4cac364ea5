// Package mailchimp subscribes users to a Mailchimp audience through the
// Marketing API v3 list members: PUT /3.0/lists/{list}/members/{hash} with
// status_if_new "pending" (Mailchimp sends the double opt-in mail), PATCH
// status "unsubscribed" on withdrawal, POST .../actions/delete-permanent on
// erasure. The member hash (MD5 of the lowercase email) is the natural
// idempotency key and is remembered as Ref, and also in the instance's
// State under the subject, so a forget finds the member even when the core
// lost the Ref (a forget carries no email to hash). 429 answers are
// retried after Retry-After. Health is GET /3.0/ping.
//
// Settings: apiKey (required, "key-dc"), listId (required), baseURL
// (optional, default https://{dc}.api.mailchimp.com).
package mailchimp

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // Mailchimp's member id is defined as MD5
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
)

// Type is the processor type name.
const Type = "mailchimp"

func init() {
	plugins.Register(plugins.Manifest{
		Type: Type, Purpose: plugins.PurposeNewsletter,
		DataCategories: []string{plugins.CategoryEmail},
		Requires:       []string{plugins.CategoryEmail},
		Description:    "Mailchimp audience: double opt-in subscription, unsubscribe on withdrawal, permanent delete on erasure.",
	}, New)
}

type processor struct {
	env    plugins.Env
	base   string
	list   string
	apiKey string
}

// New builds an instance from its settings.
func New(env plugins.Env) (plugins.Processor, error) {
	var cfg struct {
		APIKey  string `setting:"apiKey,required"`
		ListID  string `setting:"listId,required"`
		BaseURL string `setting:"baseURL"`
	}
	if err := plugins.DecodeSettings(env, &cfg); err != nil {
		return nil, err
	}
	key, list, base := cfg.APIKey, cfg.ListID, cfg.BaseURL
	if base == "" {
		_, dc, ok := strings.Cut(key, "-")
		if !ok || dc == "" {
			return nil, errors.New("settings.apiKey: want the form <key>-<datacenter>, e.g. abc123-us21 (or set baseURL)")
		}
		base = "https://" + dc + ".api.mailchimp.com"
	}
	if u, err := url.Parse(base); err != nil || u.Host == "" {
		return nil, fmt.Errorf("settings.baseURL: %q is not a URL", base)
	}
	if env.HTTPClient == nil {
		env.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &processor{env: env, base: strings.TrimRight(base, "/"), list: list, apiKey: key}, nil
}

// MemberHash is Mailchimp's member id: MD5 of the lowercase address.
func MemberHash(email string) string {
	sum := md5.Sum([]byte(strings.ToLower(email))) //nolint:gosec
	return hex.EncodeToString(sum[:])
}

func (p *processor) Deliver(ctx context.Context, r plugins.Request) (plugins.Result, error) {
	email := r.Fields[plugins.CategoryEmail]
	if email == "" {
		return plugins.Result{}, plugins.Permanent(errors.New("mailchimp: no email"))
	}
	hash := MemberHash(email)
	body := map[string]any{"email_address": email, "status_if_new": "pending"}
	prev, err := p.memberOf(ctx, r)
	if err != nil {
		return plugins.Result{}, err
	}
	if prev != "" && prev != hash {
		// The address changed: the old member goes, the new one is added.
		if err := p.call(ctx, http.MethodPost, p.member(prev)+"/actions/delete-permanent", r.ID, nil, true); err != nil {
			return plugins.Result{}, err
		}
	}
	// Remembered before the call: should the answer be lost, a forget
	// still knows which member to remove.
	if err := p.remember(ctx, r.Subject, hash); err != nil {
		return plugins.Result{}, err
	}
	if err := p.call(ctx, http.MethodPut, p.member(hash), r.ID, body, false); err != nil {
		return plugins.Result{}, err
	}
	return plugins.Result{Ref: hash}, nil
}

func (p *processor) Forget(ctx context.Context, r plugins.Request) error {
	hash, err := p.memberOf(ctx, r)
	if err != nil {
		return err
	}
	if hash == "" {
		return nil // never subscribed
	}
	if r.Erase {
		if err := p.call(ctx, http.MethodPost, p.member(hash)+"/actions/delete-permanent", r.ID, nil, true); err != nil {
			return err
		}
		if p.env.State != nil {
			if err := p.env.State.Delete(ctx, stateKey(r.Subject)); err != nil {
				return fmt.Errorf("mailchimp: forget member of subject: %w", err)
			}
		}
		return nil
	}
	return p.call(ctx, http.MethodPatch, p.member(hash), r.ID, map[string]any{"status": "unsubscribed"}, true)
}

// Health asks the API's health check endpoint, which also checks the key.
func (p *processor) Health(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/3.0/ping", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth("consentgraph", p.apiKey)
	resp, err := p.env.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("mailchimp ping: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mailchimp ping: HTTP %d", resp.StatusCode)
	}
	return nil
}

// memberOf is the member hash the user had: the Ref, or when the core lost
// it, what Deliver remembered for the subject.
func (p *processor) memberOf(ctx context.Context, r plugins.Request) (string, error) {
	if r.Ref != "" || p.env.State == nil {
		return r.Ref, nil
	}
	v, ok, err := p.env.State.Get(ctx, stateKey(r.Subject))
	if err != nil {
		return "", fmt.Errorf("mailchimp: read member of subject: %w", err)
	}
	if !ok {
		return "", nil
	}
	return string(v), nil
}

// stateKey holds a subject's member hash (no personal data in clear).
func stateKey(subject string) string { return "member:" + subject }

func (p *processor) remember(ctx context.Context, subject, hash string) error {
	if p.env.State == nil {
		return nil
	}
	if v, ok, err := p.env.State.Get(ctx, stateKey(subject)); err == nil && ok && string(v) == hash {
		return nil
	}
	if err := p.env.State.Put(ctx, stateKey(subject), []byte(hash)); err != nil {
		return fmt.Errorf("mailchimp: remember member of subject: %w", err)
	}
	return nil
}

func (p *processor) member(hash string) string {
	return p.base + "/3.0/lists/" + url.PathEscape(p.list) + "/members/" + hash
}

func (p *processor) call(ctx context.Context, method, u, id string, body any, notFoundOK bool) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return plugins.Permanent(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return plugins.Permanent(err)
	}
	req.SetBasicAuth("consentgraph", p.apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", id)
	resp, err := p.env.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("mailchimp: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusNotFound && notFoundOK:
		return nil
	}
	return plugins.HTTPStatusError(resp, "mailchimp "+method)
}
