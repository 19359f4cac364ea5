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
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/app"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/store"
	"github.com/consentgraph/consentgraph/internal/store/snapshot"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
	_ "github.com/consentgraph/consentgraph/plugins/all" // the built-in processors, as in the shipped server
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

// StoreVariable chooses the store Start runs servers on: "embedded" (the
// default) or "mongodb" (CONSENTGRAPH_TEST_MONGODB_URI, or else an embedded
// FerretDB test double).
const StoreVariable = "CONSENTGRAPH_TEST_STORE"

// Kind is the store kind Start runs servers on: StoreVariable, or
// "embedded" when it is unset.
func Kind() string {
	if kind := os.Getenv(StoreVariable); kind != "" {
		return kind
	}
	return "embedded"
}

// Start runs a server on a fresh store of the kind StoreVariable names.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartOn(t, Kind(), opts...)
}

// StartOn runs a server on a fresh store of the given kind ("embedded" or
// "mongodb").
func StartOn(t testing.TB, kind string, opts ...Option) *Server {
	t.Helper()
	cfg := ConfigOn(t, kind)
	for _, o := range opts {
		o(&cfg)
	}
	return StartWith(t, cfg)
}

// ConfigOn is Config pointing at a fresh store of the given kind: the
// embedded store in the fresh data directory, or a database of its own on
// the test MongoDB.
func ConfigOn(t testing.TB, kind string) config.Config {
	t.Helper()
	cfg := Config(t)
	switch kind {
	case "embedded":
	case "mongodb":
		cfg.MongoDBURI = storetest.MongoURI(t)
		cfg.Database = fmt.Sprintf("app%d_%d", os.Getpid(), dbCounter.Add(1))
		// Registered before the server's own clean-up, so it runs after
		// the server stopped.
		t.Cleanup(func() { dropDatabase(cfg.MongoDBURI, cfg.Database) })
	default:
		t.Fatalf("unknown store kind %q", kind)
	}
	return cfg
}

// dropDatabase removes a test's MongoDB database (best effort: the
// FerretDB test double goes with the test binary anyway).
func dropDatabase(uri, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return
	}
	defer func() { _ = c.Disconnect(ctx) }()
	_ = c.Database(name).Drop(ctx)
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

// Store is the server's store, for assertions on what is stored.
func (s *Server) Store() store.Backend { return s.App.Store }

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

// Dump returns every record the store holds, one per line as JSON after
// its kind, so a test can assert what is (not) stored in clear. Byte
// fields (sealed values, keys, hashes) are written as their raw bytes, not
// base64: a value stored in clear where a sealed one belongs then shows as
// itself. Strings are JSON-escaped (control characters as \u00XX).
func (s *Server) Dump(t testing.TB) string {
	t.Helper()
	src, ok := s.App.Store.(snapshot.Source)
	if !ok {
		t.Fatalf("the %s store cannot be dumped", s.App.Store.Kind())
	}
	ctx := context.Background()
	var b strings.Builder
	for _, kind := range snapshot.Kinds {
		err := src.Dump(ctx, kind, func(r snapshot.Record) error {
			var line bytes.Buffer
			enc := json.NewEncoder(&line)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(rawBytes(reflect.ValueOf(r))); err != nil {
				return err
			}
			b.WriteString(string(kind))
			b.WriteString(": ")
			b.Write(line.Bytes()) // Encode ends it with a newline
			return nil
		})
		if err != nil {
			t.Fatalf("dump %s: %v", kind, err)
		}
	}
	return b.String()
}

// rawBytes turns v into plain JSON-able values with every []byte as a
// string of its bytes, and struct fields by name.
func rawBytes(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return rawBytes(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return v.Interface()
		}
		out := map[string]any{}
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				if x := rawBytes(v.Field(i)); x != nil {
					out[f.Name] = x
				}
			}
		}
		return out
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			if v.Kind() == reflect.Slice && v.IsNil() {
				return nil
			}
			b := make([]byte, v.Len())
			reflect.Copy(reflect.ValueOf(b), v)
			return string(b)
		}
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range v.Len() {
			out[i] = rawBytes(v.Index(i))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			out[fmt.Sprint(it.Key().Interface())] = rawBytes(it.Value())
		}
		return out
	default:
		return v.Interface()
	}
}

// StartWithAdmin starts a server with an admin account and returns it with
// a client signed in as that admin.
func StartWithAdmin(t testing.TB, opts ...Option) (*Server, *Client) {
	t.Helper()
	opts = append(opts, func(c *config.Config) { c.AdminUsername, c.AdminPassword = "partner-admin", "partner admin password" })
	s := Start(t, opts...)
	c := s.Client()
	var out struct{ Login struct{ Token string } }
	c.Do(t, `mutation { login(username: "partner-admin", password: "partner admin password") { token } }`, nil).Decode(t, &out)
	c.Token = out.Login.Token
	return s, c
}

// WriteConfig writes content to a consentgraph.yaml in a directory of the
// test's own and returns its path.
func WriteConfig(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consentgraph.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// RepoRoot is the module's root directory, wherever the test runs from.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("apptest: no caller information to find the module root")
	}
	// this file is internal/app/apptest/apptest.go
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Recorder is an HTTP receiver that keeps the body of every request it is
// sent and answers 204: the third party a processor delivers to.
type Recorder struct {
	mu     sync.Mutex
	bodies []string
}

// ServeHTTP records the request's body.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, string(b))
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Bodies returns the bodies received so far, oldest first.
func (r *Recorder) Bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

// LockedBuffer collects output written from several goroutines (a logger,
// a child process's stdout and stderr) for a test to read.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
