// Package webhook is the generic processor: it POSTs signed JSON to a URL
// following Standard Webhooks (https://www.standardwebhooks.com): headers
// webhook-id (the idempotency key), webhook-timestamp and
// webhook-signature with a "v1a," Ed25519 signature (keys at
// /.well-known/jwks.json, key id in webhook-key-id) and, when a shared
// secret is configured, a "v1," HMAC-SHA256 signature.
//
// Settings: url (required), secret (optional, "whsec_<base64>" or plain),
// healthURL (optional: fetched with GET for the admin health check).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/consentgraph/consentgraph/plugins"
)

// Type is the processor type name.
const Type = "webhook"

func init() {
	plugins.Register(plugins.Manifest{
		Type:           Type,
		DataCategories: plugins.DataCategories,
		Description:    "Sends signed JSON (Standard Webhooks) to any HTTP service.",
	}, New)
}

// Payload is the JSON body sent.
type Payload struct {
	// Type is "subject.delivered" or "subject.forgotten".
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      Data   `json:"data"`
}

// Data is the payload's data.
type Data struct {
	Processor string            `json:"processor"`
	Purpose   string            `json:"purpose"`
	Subject   string            `json:"subject"`
	Fields    map[string]string `json:"fields,omitempty"`
	Erase     bool              `json:"erase,omitempty"`
}

type processor struct {
	env    plugins.Env
	url    string
	secret []byte
	// healthURL, when set, is fetched (GET) by Health.
	healthURL string
	now       func() time.Time
}

// New builds an instance from its settings.
func New(env plugins.Env) (plugins.Processor, error) {
	var cfg struct {
		URL       string `setting:"url,required"`
		Secret    string `setting:"secret"`
		HealthURL string `setting:"healthURL"`
	}
	if err := plugins.DecodeSettings(env, &cfg); err != nil {
		return nil, err
	}
	raw := cfg.URL
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("settings.url: %q is not an http(s) URL", raw)
	}
	p := &processor{env: env, url: raw, now: time.Now}
	if cfg.HealthURL != "" {
		if hu, err := url.Parse(cfg.HealthURL); err != nil || (hu.Scheme != "https" && hu.Scheme != "http") || hu.Host == "" {
			return nil, fmt.Errorf("settings.healthURL: %q is not an http(s) URL", cfg.HealthURL)
		}
		p.healthURL = cfg.HealthURL
	}
	if sec := cfg.Secret; sec != "" {
		if b64, ok := strings.CutPrefix(sec, "whsec_"); ok {
			if p.secret, err = base64.StdEncoding.DecodeString(b64); err != nil {
				return nil, fmt.Errorf("settings.secret: not valid whsec_ base64: %w", err)
			}
		} else {
			p.secret = []byte(sec)
		}
	}
	if env.Signer == nil {
		return nil, fmt.Errorf("webhook needs a signer")
	}
	if env.HTTPClient == nil {
		p.env.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return p, nil
}

func (p *processor) Deliver(ctx context.Context, r plugins.Request) (plugins.Result, error) {
	return plugins.Result{Ref: r.Ref}, p.send(ctx, r, "subject.delivered", Data{Fields: r.Fields})
}

func (p *processor) Forget(ctx context.Context, r plugins.Request) error {
	return p.send(ctx, r, "subject.forgotten", Data{Erase: r.Erase})
}

func (p *processor) send(ctx context.Context, r plugins.Request, typ string, d Data) error {
	now := p.now().UTC()
	d.Processor, d.Purpose, d.Subject = p.env.Name, r.Purpose, r.Subject
	body, err := json.Marshal(Payload{Type: typ, Timestamp: now.Format(time.RFC3339), Data: d})
	if err != nil {
		return plugins.Permanent(fmt.Errorf("encode payload: %w", err))
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	signed := SignedContent(r.ID, ts, body)
	kid, sig, err := p.env.Signer.Sign(ctx, signed)
	if err != nil {
		return fmt.Errorf("sign webhook: %w", err)
	}
	sigs := "v1a," + base64.StdEncoding.EncodeToString(sig)
	if p.secret != nil {
		m := hmac.New(sha256.New, p.secret)
		m.Write(signed)
		sigs += " v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return plugins.Permanent(fmt.Errorf("webhook request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", r.ID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", sigs)
	req.Header.Set("webhook-key-id", kid)
	resp, err := p.env.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return plugins.HTTPStatusError(resp, "webhook")
}

// Health fetches settings.healthURL when one is configured (any 2xx or 3xx
// is healthy); without one there is nothing to check.
func (p *processor) Health(ctx context.Context) error {
	if p.healthURL == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.healthURL, nil)
	if err != nil {
		return err
	}
	resp, err := p.env.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("webhook health: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 400 {
		return fmt.Errorf("webhook health %s: HTTP %d", p.healthURL, resp.StatusCode)
	}
	return nil
}

// SignedContent is what both signatures cover: "{id}.{timestamp}.{body}".
func SignedContent(id, timestamp string, body []byte) []byte {
	return append([]byte(id+"."+timestamp+"."), body...)
}
