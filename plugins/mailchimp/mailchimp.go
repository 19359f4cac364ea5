// Package mailchimp subscribes users to a Mailchimp audience through the
// Marketing API v3 list members: PUT /3.0/lists/{list}/members/{hash} with
// status_if_new "pending" (Mailchimp sends the double opt-in mail), PATCH
// status "unsubscribed" on withdrawal, POST .../actions/delete-permanent on
// erasure. The member hash (MD5 of the lowercase email) is the natural
// idempotency key and is remembered as Ref, so a forget after erasure still
// finds the member. 429 answers are retried after Retry-After.
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
	if err := plugins.CheckSettings(env, "apiKey", "listId", "baseURL"); err != nil {
		return nil, err
	}
	key, err := plugins.StringSetting(env, "apiKey", true)
	if err != nil {
		return nil, err
	}
	list, err := plugins.StringSetting(env, "listId", true)
	if err != nil {
		return nil, err
	}
	base, err := plugins.StringSetting(env, "baseURL", false)
	if err != nil {
		return nil, err
	}
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
	if r.Ref != "" && r.Ref != hash {
		// The address changed: the old member goes, the new one is added.
		if err := p.call(ctx, http.MethodPost, p.member(r.Ref)+"/actions/delete-permanent", r.ID, nil, true); err != nil {
			return plugins.Result{}, err
		}
	}
	if err := p.call(ctx, http.MethodPut, p.member(hash), r.ID, body, false); err != nil {
		return plugins.Result{}, err
	}
	return plugins.Result{Ref: hash}, nil
}

func (p *processor) Forget(ctx context.Context, r plugins.Request) error {
	if r.Ref == "" {
		return nil // never subscribed
	}
	if r.Erase {
		return p.call(ctx, http.MethodPost, p.member(r.Ref)+"/actions/delete-permanent", r.ID, nil, true)
	}
	return p.call(ctx, http.MethodPatch, p.member(r.Ref), r.ID, map[string]any{"status": "unsubscribed"}, true)
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
