// Package surveymonkey adds users to a SurveyMonkey contact list (API v3:
// POST /v3/contact_lists/{id}/contacts) and deletes them on withdrawal or
// erasure (DELETE /v3/contacts/{id}). The contact id is remembered as Ref;
// a later delivery for a known contact updates it (PATCH /v3/contacts/{id})
// instead of adding a second one. The id is also kept in the instance's
// State under the subject, so that a repeated delivery and a forget find
// the contact when the core lost the Ref.
//
// Settings: token (required), listId (required), baseURL (optional,
// default https://api.surveymonkey.com).
package surveymonkey

import (
	"bytes"
	"context"
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
const Type = "surveymonkey"

func init() {
	plugins.Register(plugins.Manifest{
		Type: Type, Purpose: plugins.PurposeSurveys,
		DataCategories: []string{plugins.CategoryEmail, plugins.CategoryAgeBand, plugins.CategoryCountry},
		Requires:       []string{plugins.CategoryEmail},
		// Invitations go straight to the address, with no double opt-in at
		// the provider: only a verified address may be handed over.
		RequiresVerifiedEmail: true,
		Description:           "SurveyMonkey contact list: survey invitations by email.",
	}, New)
}

type processor struct {
	env   plugins.Env
	base  string
	list  string
	token string
}

// New builds an instance from its settings.
func New(env plugins.Env) (plugins.Processor, error) {
	var cfg struct {
		Token   string `setting:"token,required"`
		ListID  string `setting:"listId,required"`
		BaseURL string `setting:"baseURL"`
	}
	if err := plugins.DecodeSettings(env, &cfg); err != nil {
		return nil, err
	}
	tok, list, base := cfg.Token, cfg.ListID, cfg.BaseURL
	if base == "" {
		base = "https://api.surveymonkey.com"
	}
	if u, err := url.Parse(base); err != nil || u.Host == "" {
		return nil, fmt.Errorf("settings.baseURL: %q is not a URL", base)
	}
	if env.HTTPClient == nil {
		env.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &processor{env: env, base: strings.TrimRight(base, "/"), list: list, token: tok}, nil
}

func (p *processor) Deliver(ctx context.Context, r plugins.Request) (plugins.Result, error) {
	email := r.Fields[plugins.CategoryEmail]
	if email == "" {
		return plugins.Result{}, plugins.Permanent(errors.New("surveymonkey: no email"))
	}
	custom := map[string]string{}
	if v := r.Fields[plugins.CategoryAgeBand]; v != "" {
		custom["1"] = v
	}
	if v := r.Fields[plugins.CategoryCountry]; v != "" {
		custom["2"] = v
	}
	body := map[string]any{"email": email, "custom_fields": custom}
	ref, err := p.contactOf(ctx, r)
	if err != nil {
		return plugins.Result{}, err
	}
	if ref != "" {
		var out struct{}
		err := p.call(ctx, http.MethodPatch, p.base+"/v3/contacts/"+url.PathEscape(ref), r.ID, body, &out)
		if err == nil {
			return plugins.Result{Ref: ref}, nil
		}
		if !errors.Is(err, errNotFound) {
			return plugins.Result{}, err
		}
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := p.call(ctx, http.MethodPost, p.base+"/v3/contact_lists/"+url.PathEscape(p.list)+"/contacts", r.ID, body, &out); err != nil {
		return plugins.Result{}, err
	}
	if out.ID == "" {
		return plugins.Result{}, errors.New("surveymonkey: answer without contact id")
	}
	if p.env.State != nil {
		if err := p.env.State.Put(ctx, stateKey(r.Subject), []byte(out.ID)); err != nil {
			return plugins.Result{}, fmt.Errorf("surveymonkey: remember contact of subject: %w", err)
		}
	}
	return plugins.Result{Ref: out.ID}, nil
}

func (p *processor) Forget(ctx context.Context, r plugins.Request) error {
	ref, err := p.contactOf(ctx, r)
	if err != nil || ref == "" {
		return err // "": never added
	}
	err = p.call(ctx, http.MethodDelete, p.base+"/v3/contacts/"+url.PathEscape(ref), r.ID, nil, nil)
	if err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	if p.env.State != nil {
		if err := p.env.State.Delete(ctx, stateKey(r.Subject)); err != nil {
			return fmt.Errorf("surveymonkey: forget contact of subject: %w", err)
		}
	}
	return nil
}

// stateKey holds a subject's contact id (no personal data in clear).
func stateKey(subject string) string { return "contact:" + subject }

// contactOf is the user's contact id: the Ref, or when the core lost it,
// what Deliver remembered for the subject.
func (p *processor) contactOf(ctx context.Context, r plugins.Request) (string, error) {
	if r.Ref != "" || p.env.State == nil {
		return r.Ref, nil
	}
	v, ok, err := p.env.State.Get(ctx, stateKey(r.Subject))
	if err != nil {
		return "", fmt.Errorf("surveymonkey: read contact of subject: %w", err)
	}
	if !ok {
		return "", nil
	}
	return string(v), nil
}

var errNotFound = errors.New("surveymonkey: not found")

func (p *processor) call(ctx context.Context, method, u, id string, body, out any) error {
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
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", id)
	resp, err := p.env.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("surveymonkey: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return errNotFound
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return plugins.HTTPStatusError(resp, "surveymonkey "+method)
	}
	if out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("surveymonkey: decode answer: %w", err)
		}
	}
	return nil
}
