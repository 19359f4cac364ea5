// Package contacts is a complete processor plugin for a small HTTP
// "contacts" API, written the way a plugin in a module of its own is: it
// imports only the public SDK (github.com/consentgraph/consentgraph/plugins).
//
// The provider's API (documented in its own terms):
//
//	PUT    /v1/contacts/{id}                  create or replace a contact: {"email", "country", "status": "subscribed"}
//	PATCH  /v1/contacts/{id}                  {"status": "unsubscribed"}
//	DELETE /v1/contacts/{id}                  delete for good
//	GET    /v1/health                         200 when up and the token is valid
//
// Every call carries "Authorization: Bearer {token}" and
// "Idempotency-Key"; 404 on PATCH or DELETE means there is no such
// contact; 429 answers carry X-RateLimit-Reset, the seconds to wait.
//
// The contact id is the subject itself, a natural key: repeats and
// forgets need no Ref at all.
//
// Settings:
//
//	settings:
//	  token: ${CONTACTS_TOKEN}     # required, from the environment
//	  baseURL: https://api.contacts.example   # optional
//	  timeout: 10s                 # optional, per call
package contacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
)

// Type is the name operators write in type:.
const Type = "contacts"

// RateLimitHeader is where the provider says how many seconds to wait.
const RateLimitHeader = "X-RateLimit-Reset"

func init() {
	plugins.Register(plugins.Manifest{
		Type:           Type,
		Purpose:        plugins.PurposeNewsletter,
		DataCategories: []string{plugins.CategoryEmail, plugins.CategoryCountry},
		Requires:       []string{plugins.CategoryEmail},
		Description:    "Contacts API: subscribe, unsubscribe on withdrawal, delete on erasure.",
	}, New)
}

// Settings are the instance settings (see the package comment).
type Settings struct {
	Token   string        `setting:"token,required"`
	BaseURL string        `setting:"baseURL"`
	Timeout time.Duration `setting:"timeout"`
}

// Processor is one configured instance.
type Processor struct {
	cfg    Settings
	client *http.Client
}

// New builds an instance from its settings.
func New(env plugins.Env) (plugins.Processor, error) {
	cfg := Settings{BaseURL: "https://api.contacts.example", Timeout: 10 * time.Second}
	if err := plugins.DecodeSettings(env, &cfg); err != nil {
		return nil, err
	}
	if u, err := url.Parse(cfg.BaseURL); err != nil || u.Host == "" {
		return nil, fmt.Errorf("settings.baseURL: %q is not a URL", cfg.BaseURL)
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	client := env.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	return &Processor{cfg: cfg, client: client}, nil
}

// Deliver creates or replaces the contact; PUT on a natural key makes
// repeats harmless.
func (p *Processor) Deliver(ctx context.Context, r plugins.Request) (plugins.Result, error) {
	email := r.Fields[plugins.CategoryEmail]
	if email == "" {
		return plugins.Result{}, plugins.Permanent(errors.New("contacts: no email"))
	}
	body := map[string]string{"email": email, "status": "subscribed"}
	// A field missing from Fields means the user removed it (or withdrew
	// it): clear it at the provider rather than keep a stale value.
	body["country"] = r.Fields[plugins.CategoryCountry]
	if err := p.call(ctx, http.MethodPut, r, body); err != nil {
		return plugins.Result{}, err
	}
	return plugins.Result{Ref: r.Subject}, nil
}

// Forget unsubscribes the contact, or deletes it for good on erasure. The
// subject is the contact id, so an empty Ref is no obstacle.
func (p *Processor) Forget(ctx context.Context, r plugins.Request) error {
	var err error
	if r.Erase {
		err = p.call(ctx, http.MethodDelete, r, nil)
	} else {
		err = p.call(ctx, http.MethodPatch, r, map[string]string{"status": "unsubscribed"})
	}
	if errors.Is(err, errNotFound) {
		return nil // never delivered, or already gone
	}
	return err
}

// Health implements plugins.HealthChecker.
func (p *Processor) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.BaseURL+"/v1/health", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("contacts health: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("contacts health: HTTP %d", resp.StatusCode)
	}
	return nil
}

var errNotFound = errors.New("contacts: no such contact")

func (p *Processor) call(ctx context.Context, method string, r plugins.Request, body any) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return plugins.Permanent(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.cfg.BaseURL+"/v1/contacts/"+url.PathEscape(r.Subject), rd)
	if err != nil {
		return plugins.Permanent(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", r.ID)
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("contacts %s: %w", method, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusNotFound && method != http.MethodPut:
		return errNotFound
	case resp.StatusCode == http.StatusTooManyRequests:
		if secs, err := strconv.Atoi(resp.Header.Get(RateLimitHeader)); err == nil && secs >= 0 {
			return plugins.RetryAfter(time.Duration(secs)*time.Second, fmt.Errorf("contacts %s: rate limited", method))
		}
	}
	return plugins.HTTPStatusError(resp, "contacts "+method)
}
