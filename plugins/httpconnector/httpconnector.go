// Package httpconnector is the declarative HTTP processor (type "http"):
// operators who write no Go connect a provider that is "upsert contact /
// remove contact / delete contact" over HTTP by writing three requests as
// templates in the config file:
//
//   - name: crm
//     type: http
//     purpose: newsletter
//     fields: [user.contact.email, user.demographic.country]
//     settings:
//     headers: {Authorization: "Bearer ${CRM_TOKEN}"}
//     deliver: {method: PUT, url: "https://crm.example.org/contacts/{{.Subject}}", body: '{"email": {{index .Fields "user.contact.email"}}}'}
//     forget:  {method: DELETE, url: "https://crm.example.org/contacts/{{.Subject}}"}
//     erase:   {method: DELETE, url: "https://crm.example.org/contacts/{{.Subject}}?permanent=true"}
//     rateLimitResetHeader: x-ratelimit-reset
//
// Method, url and body are Go text/template templates over the
// plugins.Request (.ID, .Subject, .Purpose, .Fields, .Ref, .Erase, .Attempt).
// Values are escaped where they land, so a user's data cannot change the
// request's shape: every value written into url is percent-encoded (all but
// A-Z a-z 0-9 - . _ ~), and every value written into body becomes a JSON
// value (a string in quotes). The functions json and escape do the same
// explicitly; writing them is allowed and does not encode twice.
//
// Outcomes: 2xx is done (on deliver, refFrom names a JSON field of the
// answer, e.g. "id" or "data.id", kept as the user's Ref); 404 on forget or
// erase is done; a status listed in an operation's accept is done; 408, 429
// and 5xx are retried (Retry-After and the rateLimitResetHeader names are
// honoured); any other 4xx is permanent. Every request carries the item id
// as Idempotency-Key. Erase defaults to forget. Templates are parsed and
// tried at start-up: a mistake stops the server with the processor's name.
package httpconnector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/consentgraph/consentgraph/plugins"
)

// Type is the processor type name.
const Type = "http"

func init() {
	plugins.Register(plugins.Manifest{
		Type: Type,
		// Any category: the operator's fields (checked against the purpose)
		// decide what an instance receives.
		DataCategories: plugins.DataCategories,
		Description:    "Calls any HTTP API with requests written as templates in the configuration.",
	}, New)
}

// maxAnswer bounds how much of an answer is read for refFrom.
const maxAnswer = 1 << 20

type settings struct {
	Headers              map[string]string `json:"headers"`
	Deliver              *opSettings       `json:"deliver"`
	Forget               *opSettings       `json:"forget"`
	Erase                *opSettings       `json:"erase"`
	RateLimitResetHeader stringList        `json:"rateLimitResetHeader"`
	// Description is read by the core (the text users see); accepted here
	// so that it is not refused as unknown.
	Description string `json:"description"`
}

type opSettings struct {
	Method  string `json:"method"`
	URL     string `json:"url"`
	Body    string `json:"body"`
	Accept  []int  `json:"accept"`
	RefFrom string `json:"refFrom"`
}

// stringList is one string or a list of them.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("must be a header name or a list of them")
	}
	*l = many
	return nil
}

// operation is one parsed request.
type operation struct {
	name    string
	method  *template.Template
	url     *template.Template
	body    *template.Template // nil: no body
	accept  []int
	refFrom []string // JSON path into the answer; nil: no ref
}

type connector struct {
	env     plugins.Env
	headers http.Header
	limits  plugins.RateLimitHeaders
	deliver *operation
	forget  *operation
	erase   *operation
}

// New builds an instance; every template is parsed and tried on a sample
// request, so mistakes surface at start-up.
func New(env plugins.Env) (plugins.Processor, error) {
	raw, err := json.Marshal(env.Settings)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	var s settings
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.HTTPClient == nil {
		env.HTTPClient = http.DefaultClient
	}
	c := &connector{env: env, headers: http.Header{}, limits: plugins.RateLimitHeaders(s.RateLimitResetHeader)}
	for k, v := range s.Headers {
		if !validHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("settings.headers: %q is not a valid header", k)
		}
		c.headers.Set(k, v)
	}
	if s.Deliver == nil || s.Forget == nil {
		return nil, errors.New("settings.deliver and settings.forget are required")
	}
	if c.deliver, err = parseOperation("deliver", *s.Deliver, true); err != nil {
		return nil, err
	}
	if c.forget, err = parseOperation("forget", *s.Forget, false); err != nil {
		return nil, err
	}
	c.erase = c.forget
	if s.Erase != nil {
		if c.erase, err = parseOperation("erase", *s.Erase, false); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, r) {
			return false
		}
	}
	return true
}

var funcs = template.FuncMap{"json": jsonValue, "escape": escape}

// jsonValue renders v as a JSON value.
func jsonValue(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// escape percent-encodes everything but RFC 3986's unreserved characters,
// so that a value is one opaque path segment or query value: no "/", "?",
// "&", "=" or "#" of a user's data can reach the URL's structure.
func escape(v any) string {
	s := fmt.Sprint(v)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func parseOperation(name string, o opSettings, deliver bool) (*operation, error) {
	fail := func(err error) (*operation, error) { return nil, fmt.Errorf("settings.%s: %w", name, err) }
	if o.Method == "" || o.URL == "" {
		return fail(errors.New("method and url are required"))
	}
	op := &operation{name: name, accept: o.Accept}
	var err error
	if op.method, err = parseTemplate(name+".method", o.Method, ""); err != nil {
		return fail(err)
	}
	if op.url, err = parseTemplate(name+".url", o.URL, "escape"); err != nil {
		return fail(err)
	}
	if o.Body != "" {
		if op.body, err = parseTemplate(name+".body", o.Body, "json"); err != nil {
			return fail(err)
		}
	}
	if o.RefFrom != "" {
		if !deliver {
			return fail(errors.New("refFrom is only read from deliver's answer"))
		}
		op.refFrom = strings.Split(o.RefFrom, ".")
	}
	for _, st := range o.Accept {
		if st < 200 || st > 599 {
			return fail(fmt.Errorf("accept: %d is not an HTTP status", st))
		}
	}
	// Try it on sample requests, with and without a Ref, for and without
	// every field: a mistake shows now, not at the first user's delivery.
	for _, ref := range []string{"", "12345"} {
		sample := plugins.Request{ID: "0000000000000000sample", Subject: "c2FtcGxlLXN1YmplY3Q", Purpose: "sample", Ref: ref, Attempt: 1,
			Fields: map[string]string{}}
		if deliver {
			for _, f := range plugins.DataCategories {
				sample.Fields[f] = "sample"
			}
		}
		if _, err := op.request(context.Background(), sample, nil); err != nil {
			return fail(err)
		}
	}
	return op, nil
}

// parseTemplate parses text; with escaper set, every action that prints a
// value gets escaper as its last command unless it already ends with it
// (the way html/template escapes by context).
func parseTemplate(name, text, escaper string) (*template.Template, error) {
	t, err := template.New(name).Funcs(funcs).Option("missingkey=zero").Parse(text)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, fmt.Errorf("%s: define and block are not supported", name)
	}
	if escaper != "" {
		addEscaper(t.Tree, t.Tree.Root, escaper)
	}
	return t, nil
}

func addEscaper(tree *parse.Tree, n parse.Node, escaper string) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			addEscaper(tree, c, escaper)
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 {
			return // {{$x := …}} prints nothing
		}
		cmds := n.Pipe.Cmds
		if last := cmds[len(cmds)-1]; len(last.Args) > 0 {
			if id, ok := last.Args[0].(*parse.IdentifierNode); ok && id.Ident == escaper {
				return
			}
		}
		id := parse.NewIdentifier(escaper).SetTree(tree).SetPos(n.Pos)
		n.Pipe.Cmds = append(cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: n.Pos, Args: []parse.Node{id}})
	case *parse.IfNode:
		addEscaper(tree, n.List, escaper)
		addEscaper(tree, n.ElseList, escaper)
	case *parse.RangeNode:
		addEscaper(tree, n.List, escaper)
		addEscaper(tree, n.ElseList, escaper)
	case *parse.WithNode:
		addEscaper(tree, n.List, escaper)
		addEscaper(tree, n.ElseList, escaper)
	}
}

var methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// request renders the operation for r.
func (op *operation) request(ctx context.Context, r plugins.Request, headers http.Header) (*http.Request, error) {
	render := func(t *template.Template) (string, error) {
		var b strings.Builder
		if err := t.Execute(&b, r); err != nil {
			return "", err
		}
		return b.String(), nil
	}
	method, err := render(op.method)
	if err != nil {
		return nil, err
	}
	method = strings.ToUpper(strings.TrimSpace(method))
	if !slices.Contains(methods, method) {
		return nil, fmt.Errorf("method %q is not one of %v", method, methods)
	}
	rawURL, err := render(op.url)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("url %q is not an absolute http(s) URL", u.Redacted())
	}
	var body io.Reader = http.NoBody
	hasBody := false
	if op.body != nil {
		b, err := render(op.body)
		if err != nil {
			return nil, err
		}
		// A template may render nothing for some requests ({{if .Ref}}).
		if b = strings.TrimSpace(b); b != "" {
			if !json.Valid([]byte(b)) {
				return nil, fmt.Errorf("body is not valid JSON: %.200s", b)
			}
			body, hasBody = strings.NewReader(b), true
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header[k] = v
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", r.ID)
	return req, nil
}

func (c *connector) Deliver(ctx context.Context, r plugins.Request) (plugins.Result, error) {
	resp, err := c.call(ctx, c.deliver, r)
	if err != nil {
		return plugins.Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 || c.deliver.refFrom == nil {
		return plugins.Result{}, nil // an accepted status, or no ref wanted
	}
	ref, err := refOf(io.LimitReader(resp.Body, maxAnswer), c.deliver.refFrom)
	if err != nil {
		// The provider did what was asked; only the id is missing, and the
		// core keeps any Ref it had. Say so, for the operator.
		c.env.Logger.WarnContext(ctx, "http processor: no ref in the deliver answer", "refFrom", strings.Join(c.deliver.refFrom, "."), "err", err)
		return plugins.Result{}, nil
	}
	return plugins.Result{Ref: ref}, nil
}

func (c *connector) Forget(ctx context.Context, r plugins.Request) error {
	op := c.forget
	if r.Erase {
		op = c.erase
	}
	resp, err := c.call(ctx, op, r)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// call sends op for r and returns the answer when it counts as done.
func (c *connector) call(ctx context.Context, op *operation, r plugins.Request) (*http.Response, error) {
	req, err := op.request(ctx, r, c.headers)
	if err != nil {
		// Templates were tried at start-up; what fails now fails again.
		return nil, plugins.Permanent(fmt.Errorf("%s: %w", op.name, err))
	}
	resp, err := c.env.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	switch st := resp.StatusCode; {
	case st >= 200 && st <= 299, slices.Contains(op.accept, st),
		st == http.StatusNotFound && op != c.deliver: // already gone
		return resp, nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	return nil, plugins.HTTPStatusErrorWith(resp, c.env.Name+" "+op.name, c.limits)
}

// refOf reads the value at path from a JSON answer: a string, or a number
// written as it came.
func refOf(r io.Reader, path []string) (string, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("answer is not JSON: %w", err)
	}
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return "", fmt.Errorf("no object at %q", k)
		}
		if v, ok = m[k]; !ok {
			return "", fmt.Errorf("no field %q", k)
		}
	}
	switch v := v.(type) {
	case string:
		if v != "" {
			return v, nil
		}
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", fmt.Errorf("field is %T, not a string or number", v)
}
