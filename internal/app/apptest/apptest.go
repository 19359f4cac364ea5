// Package apptest starts a real Consentgraph server over real HTTP on the
// embedded store, and talks GraphQL to it the way any client would.
package apptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
)

// Server is a running app behind an httptest server.
type Server struct {
	URL  string
	App  *app.App
	Cfg  config.Config
	http *httptest.Server
	t    testing.TB
}

// Option adjusts the configuration before start.
type Option func(*config.Config)

// Config returns the defaults a server starts with, as if no flag or
// variable were set, with a fresh data directory.
func Config(t testing.TB) config.Config {
	t.Helper()
	cfg, err := config.Load(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("default config: %v", err)
	}
	cfg.DataDir = t.TempDir()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg.MasterKey = base64.StdEncoding.EncodeToString(key)
	// Tests sign up many users from 127.0.0.1; the abuse limits have tests
	// of their own that turn them back on.
	cfg.RateLimits = false
	return cfg
}

var dbCounter atomic.Int64

// Start runs a server on a fresh database of the shared embedded store.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	st := storetest.Shared(t)
	cfg := Config(t)
	cfg.MongoDBURI = st.URI
	cfg.Database = fmt.Sprintf("app%d_%d", os.Getpid(), dbCounter.Add(1))
	for _, o := range opts {
		o(&cfg)
	}
	s := StartWith(t, cfg)
	t.Cleanup(func() { _ = st.Client.Database(cfg.Database).Drop(context.Background()) })
	return s
}

// StartWith runs a server with exactly cfg (an empty MongoDBURI starts an
// embedded store of its own in cfg.DataDir). It is stopped when the test ends.
func StartWith(t testing.TB, cfg config.Config) *Server {
	t.Helper()
	return StartWithLogger(t, cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// StartWithLogger is StartWith with the server's logs going to log.
func StartWithLogger(t testing.TB, cfg config.Config, log *slog.Logger) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		t.Fatalf("start app: %v", err)
	}
	hs := httptest.NewServer(a.Handler())
	s := &Server{URL: hs.URL, App: a, Cfg: cfg, http: hs, t: t}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and its store; safe to call twice.
func (s *Server) Close() {
	if s.http == nil {
		return
	}
	s.http.Close()
	s.http = nil
	_ = s.App.Close(context.Background())
}

// DB is the server's database, for assertions on what is stored.
func (s *Server) DB() *mongo.Database { return s.App.Store.DB }

// testWriter sends server logs to the test log; after the test has ended
// (late background jobs) they are dropped.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Client is a GraphQL client with a cookie jar and an optional Bearer token.
type Client struct {
	URL   string
	Token string
	HTTP  *http.Client
	// Header is added to every request.
	Header http.Header
}

// Client returns a new client without credentials.
func (s *Server) Client() *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{URL: s.URL, HTTP: &http.Client{Jar: jar, Timeout: 60 * time.Second}, Header: http.Header{}}
}

// Error is one GraphQL error.
type Error struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// Response is a GraphQL response plus its HTTP status.
type Response struct {
	Status int
	Header http.Header
	Data   json.RawMessage `json:"data"`
	Errors []Error         `json:"errors"`
	Raw    []byte
}

// Code is the extensions.code of the first error, or "".
func (r *Response) Code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// Field is the extensions.field of the first error, or "".
func (r *Response) Field() string {
	if len(r.Errors) == 0 {
		return ""
	}
	f, _ := r.Errors[0].Extensions["field"].(string)
	return f
}

// Decode unmarshals data into v, failing the test on errors.
func (r *Response) Decode(t testing.TB, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected GraphQL errors: %s", r.Raw)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decode data %s: %v", r.Data, err)
	}
}

// Do posts a query with variables.
func (c *Client) Do(t testing.TB, query string, vars map[string]any) *Response {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatalf("encode request: %v", err)
	}
	return c.Post(t, "application/json", body)
}

// Post sends a raw body to /graphql.
func (c *Client) Post(t testing.TB, contentType string, body []byte) *Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", contentType)
	return c.send(t, req)
}

func (c *Client) send(t testing.TB, req *http.Request) *Response {
	t.Helper()
	for k, v := range c.Header {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	r := &Response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if err := json.Unmarshal(raw, r); err != nil {
		t.Fatalf("response is not JSON (status %d): %s", res.StatusCode, raw)
	}
	return r
}

// Register signs up a user with only a username and password and returns a
// client holding its token.
func (s *Server) Register(t testing.TB, username string) *Client {
	t.Helper()
	c := s.Client()
	r := c.Do(t, `mutation($u: String!) { register(input: {username: $u, password: "correct horse battery"}) { token } }`,
		map[string]any{"u": username})
	var out struct{ Register struct{ Token string } }
	r.Decode(t, &out)
	c.Token = out.Register.Token
	return c
}

// Dump returns every document of every collection as extended JSON, so a
// test can assert what is (not) stored in clear.
func (s *Server) Dump(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	names, err := s.DB().ListCollectionNames(ctx, map[string]any{})
	if err != nil {
		t.Fatalf("list collections: %v", err)
	}
	var b strings.Builder
	for _, name := range names {
		cur, err := s.DB().Collection(name).Find(ctx, map[string]any{})
		if err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
		for cur.Next(ctx) {
			b.WriteString(name)
			b.WriteString(": ")
			b.WriteString(cur.Current.String())
			b.WriteString("\n")
		}
		if err := cur.Err(); err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
		_ = cur.Close(ctx)
	}
	return b.String()
}
