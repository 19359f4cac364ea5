// Package surveymonkey adds users to a SurveyMonkey contact list (API v3:
// POST /v3/contact_lists/{id}/contacts) and deletes them on withdrawal or
// erasure (DELETE /v3/contacts/{id}). The contact id is remembered as Ref;
// a later delivery for a known contact updates it (PATCH /v3/contacts/{id})
// instead of adding a second one. The id is also kept in the instance's
// State under the subject, so that a repeated delivery and a forget find
// the contact when the core lost the Ref.
//
// With collectorId and messageId set (an email collector of a survey and
// its invitation message), each delivery also makes the contact a
// recipient of that message (POST
// /v3/collectors/{id}/messages/{id}/recipients/bulk, which never adds a
// recipient twice), reads the recipient's personal survey_link (GET
// /v3/collectors/{id}/recipients/{id}) and the collector's name and
// close_date (GET /v3/collectors/{id}), and reports the invitation to the
// user as a "survey" item of their processor link.
//
// Settings: token (required), listId (required), baseURL (optional,
// default https://api.surveymonkey.com), collectorId and messageId
// (optional, together).
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
	env       plugins.Env
	base      string
	list      string
	token     string
	collector string
	message   string
}

// New builds an instance from its settings.
func New(env plugins.Env) (plugins.Processor, error) {
	var cfg struct {
		Token       string `setting:"token,required"`
		ListID      string `setting:"listId,required"`
		BaseURL     string `setting:"baseURL"`
		CollectorID string `setting:"collectorId"`
		MessageID   string `setting:"messageId"`
	}
	if err := plugins.DecodeSettings(env, &cfg); err != nil {
		return nil, err
	}
	tok, list, base := cfg.Token, cfg.ListID, cfg.BaseURL
	if base == "" {
		base = "https://api.surveymonkey.com"
	}
	collector, message := cfg.CollectorID, cfg.MessageID
	if (collector == "") != (message == "") {
		return nil, errors.New("settings.collectorId and settings.messageId go together")
	}
	if u, err := url.Parse(base); err != nil || u.Host == "" {
		return nil, fmt.Errorf("settings.baseURL: %q is not a URL", base)
	}
	if env.HTTPClient == nil {
		env.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &processor{env: env, base: strings.TrimRight(base, "/"), list: list, token: tok, collector: collector, message: message}, nil
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
			return p.invite(ctx, r.ID, ref)
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
	return p.invite(ctx, r.ID, out.ID)
}

// invite makes contact a recipient of the configured invitation message
// and reports the invitation as the user's link status. Without a
// collector the contact is just ACTIVE. A failure retries the whole
// delivery, whose calls are all repeatable.
func (p *processor) invite(ctx context.Context, id, contact string) (plugins.Result, error) {
	res := plugins.Result{Ref: contact, Link: &plugins.LinkStatus{State: plugins.LinkActive}}
	if p.collector == "" {
		return res, nil
	}
	coll := p.base + "/v3/collectors/" + url.PathEscape(p.collector)
	type recipient struct {
		ID string `json:"id"`
	}
	var added struct {
		Succeeded []recipient `json:"succeeded"`
		Existing  []recipient `json:"existing"`
	}
	if err := p.call(ctx, http.MethodPost, coll+"/messages/"+url.PathEscape(p.message)+"/recipients/bulk", id,
		map[string]any{"contact_ids": []string{contact}}, &added); err != nil {
		return plugins.Result{}, err
	}
	rs := append(added.Succeeded, added.Existing...)
	if len(rs) == 0 || rs[0].ID == "" {
		return plugins.Result{}, errors.New("surveymonkey: the recipient was neither added nor existing")
	}
	var rcp struct {
		SurveyLink string `json:"survey_link"`
	}
	if err := p.call(ctx, http.MethodGet, coll+"/recipients/"+url.PathEscape(rs[0].ID), id, nil, &rcp); err != nil {
		return plugins.Result{}, err
	}
	var c struct {
		Name      string `json:"name"`
		CloseDate string `json:"close_date"`
	}
	if err := p.call(ctx, http.MethodGet, coll, id, nil, &c); err != nil {
		return plugins.Result{}, err
	}
	item := plugins.LinkItem{Kind: "survey", Title: c.Name, URL: rcp.SurveyLink}
	if item.Title == "" {
		// The collector's name is the operator's, in their language; only
		// our own word for it is translated.
		item.Title, item.Titles = "Survey", map[string]string{"ja": "アンケート"}
	}
	if c.CloseDate != "" {
		// SurveyMonkey writes close_date as 2006-01-02T15:04:05 (UTC) or RFC 3339.
		for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05"} {
			if t, err := time.Parse(layout, c.CloseDate); err == nil {
				item.ExpiresAt = t.UTC()
				break
			}
		}
	}
	res.Link.Items = []plugins.LinkItem{item}
	return res, nil
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
