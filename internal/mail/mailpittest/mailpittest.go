// Package mailpittest gives tests a real SMTP server: a Mailpit process on
// random loopback ports, with its HTTP API to read what arrived.
//
//	srv := mailpittest.Start(t)
//	cfg, _ := mail.ParseURL(srv.SMTPURL())
//	... send ...
//	got := srv.WaitFor(t, "user@example.org", 5*time.Second)
//
// The binary is found or installed by [Binary]. Each Server has its own
// database and is stopped when the test ends.
package mailpittest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/consentgraph/consentgraph/internal/httpsec"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultFrom is the from= of SMTPURL.
const DefaultFrom = "Consentgraph Test <noreply@consentgraph.test>"

type tlsMode int

const (
	offerSTARTTLS tlsMode = iota
	requireSTARTTLS
	implicitTLS
	noTLS
)

type options struct {
	tls tlsMode
}

// Option changes how Start runs Mailpit.
type Option func(*options)

// WithoutTLS runs Mailpit without a certificate: it does not offer STARTTLS.
func WithoutTLS() Option { return func(o *options) { o.tls = noTLS } }

// RequireSTARTTLS makes Mailpit refuse MAIL, RCPT and AUTH until the client
// has switched to TLS with STARTTLS, so a delivered message proves STARTTLS.
func RequireSTARTTLS() Option { return func(o *options) { o.tls = requireSTARTTLS } }

// ImplicitTLS makes the SMTP port speak TLS from the first byte (smtps).
func ImplicitTLS() Option { return func(o *options) { o.tls = implicitTLS } }

// Server is a running Mailpit.
//
// By default it offers STARTTLS with a self-signed certificate for
// 127.0.0.1 (trust it with RootCAs, or use SMTPURL which sets
// insecure_skip_verify=true), accepts mail without authentication and
// accepts any user name and password when given (also without TLS unless
// TLS is required). Mailpit records the user name (Summary.Username) only
// for AUTH LOGIN, not AUTH PLAIN; use SetChaos on Authentication to observe
// that a client authenticates.
type Server struct {
	smtpAddr string
	apiURL   string
	mode     tlsMode
	certPEM  []byte
	client   *http.Client

	mu   sync.Mutex
	seen map[string]bool // IDs already returned by WaitFor
}

// syncBuffer collects Mailpit's output for failure reports.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep memory bounded in long tests
		b.buf.Reset()
		b.buf.WriteString("[earlier output dropped]\n")
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs Mailpit on random loopback ports and stops it in t.Cleanup.
// It fails the test (never skips it) when Mailpit cannot be found,
// installed or started.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatalf("mailpittest: no mailpit binary: %v", err)
	}
	// TempDir before Cleanup: cleanups run last-in first-out, so Mailpit is
	// stopped before its directory is removed.
	dir := t.TempDir()

	s := &Server{
		mode:   o.tls,
		client: &http.Client{Timeout: 10 * time.Second},
		seen:   map[string]bool{},
	}
	var tlsArgs []string
	if o.tls != noTLS {
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		s.certPEM, err = writeSelfSigned(certFile, keyFile)
		if err != nil {
			t.Fatalf("mailpittest: generate certificate: %v", err)
		}
		tlsArgs = []string{"--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile}
		switch o.tls {
		case requireSTARTTLS:
			tlsArgs = append(tlsArgs, "--smtp-require-starttls")
		case implicitTLS:
			tlsArgs = append(tlsArgs, "--smtp-require-tls")
		}
	}

	// Free ports are picked by binding and releasing them, so another
	// process may grab one first: retry with new ports a few times.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		smtpPort, err1 := freePort()
		httpPort, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("mailpittest: pick ports: %v", err)
		}
		s.smtpAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(smtpPort))
		httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
		s.apiURL = "http://" + httpAddr

		args := []string{
			"--smtp", s.smtpAddr,
			"--listen", httpAddr,
			"--database", filepath.Join(dir, fmt.Sprintf("mailpit-%d.db", attempt)),
			"--max", "0", // keep every message
			"--disable-version-check",
			"--smtp-disable-rdns",
			"--smtp-auth-accept-any",
			"--enable-chaos",
		}
		if o.tls == noTLS || o.tls == offerSTARTTLS {
			// Mailpit refuses this flag together with required TLS.
			args = append(args, "--smtp-auth-allow-insecure")
		}
		args = append(args, tlsArgs...)
		out := &syncBuffer{}
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Stdout = out
		cmd.Stderr = out
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatalf("mailpittest: start %s: %v", bin, err)
		}
		// exited is closed once Mailpit has exited, waitErr says how.
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(exited) }()

		err := s.waitReady(exited, &waitErr, 30*time.Second)
		if err == nil {
			t.Cleanup(func() {
				stop(cmd, exited)
				if t.Failed() {
					t.Logf("mailpit output:\n%s", out.String())
				}
			})
			return s
		}
		stop(cmd, exited)
		lastErr = fmt.Errorf("%w\nmailpit %s\n%s", err, strings.Join(args, " "), out.String())
		if !strings.Contains(out.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("mailpittest: mailpit did not start: %v", lastErr)
	return nil
}

func stop(cmd *exec.Cmd, exited <-chan struct{}) {
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// waitReady polls until the API answers /readyz and the SMTP port accepts.
func (s *Server) waitReady(exited <-chan struct{}, waitErr *error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("mailpit exited during start-up: %v", *waitErr)
		default:
		}
		if s.ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mailpit not ready after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) ready() bool {
	resp, err := s.client.Get(s.apiURL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c, err := net.DialTimeout("tcp", s.smtpAddr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeSelfSigned writes the same kind of self-signed certificate the
// server makes for --dev-tls (127.0.0.1, ::1, localhost) as PEM files for
// Mailpit, and returns the certificate PEM.
func writeSelfSigned(certFile, keyFile string) ([]byte, error) {
	cert, _, err := httpsec.DevCertificate("")
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	return certPEM, nil
}

// SMTPAddr is the SMTP listener, "127.0.0.1:port".
func (s *Server) SMTPAddr() string { return s.smtpAddr }

// APIURL is the base URL of the web UI and HTTP API.
func (s *Server) APIURL() string { return s.apiURL }

// SMTPURL returns a CONSENTGRAPH_SMTP_URL for this server with
// from=DefaultFrom: smtps:// for ImplicitTLS, smtp:// otherwise, and
// insecure_skip_verify=true when the server has a (self-signed) certificate.
func (s *Server) SMTPURL() string {
	u := url.URL{Scheme: "smtp", Host: s.smtpAddr}
	if s.mode == implicitTLS {
		u.Scheme = "smtps"
	}
	q := url.Values{"from": {DefaultFrom}}
	if s.mode != noTLS {
		q.Set("insecure_skip_verify", "true")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// RootCAs is a pool holding the server's certificate, for verifying it
// instead of skipping verification; nil with WithoutTLS.
func (s *Server) RootCAs() *x509.CertPool {
	if s.certPEM == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.certPEM)
	return pool
}

// Address is a mailbox as Mailpit reports it.
type Address struct {
	Name    string
	Address string
}

// Summary is one entry of the message list.
type Summary struct {
	ID        string // Mailpit's database ID
	MessageID string // Message-ID header, without angle brackets
	From      Address
	To        []Address
	Subject   string
	Created   time.Time
	Username  string // SMTP AUTH user name, if the client authenticated
	Snippet   string
}

// Message is one received message in full.
type Message struct {
	Summary
	Text string // decoded text/plain body
	HTML string // decoded text/html body, "" if none
	// Headers are the raw (undecoded) header fields by canonical name.
	Headers map[string][]string
	// Raw is the message exactly as stored, including Mailpit's Received.
	Raw []byte
}

// Header returns the first value of the named header field ("" if absent);
// the name is matched case-insensitively.
func (m Message) Header(name string) string {
	for k, v := range m.Headers {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

type apiAddress struct {
	Name    string
	Address string
}

type apiSummary struct {
	ID        string
	MessageID string
	From      *apiAddress
	To        []*apiAddress
	Subject   string
	Created   time.Time
	Username  string
	Snippet   string
}

func (a apiSummary) summary() Summary {
	s := Summary{ID: a.ID, MessageID: a.MessageID, Subject: a.Subject, Created: a.Created,
		Username: a.Username, Snippet: a.Snippet}
	if a.From != nil {
		s.From = Address(*a.From)
	}
	for _, to := range a.To {
		if to != nil {
			s.To = append(s.To, Address(*to))
		}
	}
	return s
}

func (s *Server) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.apiURL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("mailpit %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("mailpit %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mailpit %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	switch out := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*out = data
		return nil
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("mailpit %s %s: decode: %w", method, path, err)
		}
		return nil
	}
}

// Messages lists every stored message, newest first.
func (s *Server) Messages(ctx context.Context) ([]Summary, error) {
	const page = 250
	var all []Summary
	for start := 0; ; start += page {
		var resp struct {
			MessagesCount int          `json:"messages_count"`
			Messages      []apiSummary `json:"messages"`
		}
		if err := s.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/messages?start=%d&limit=%d", start, page), nil, &resp); err != nil {
			return nil, err
		}
		for _, m := range resp.Messages {
			all = append(all, m.summary())
		}
		if len(resp.Messages) < page || len(all) >= resp.MessagesCount {
			return all, nil
		}
	}
}

// Get fetches one message in full by its Mailpit ID. Created and Snippet
// are left zero (the list has them; WaitFor fills them in).
func (s *Server) Get(ctx context.Context, id string) (Message, error) {
	var full struct {
		apiSummary
		Text string
		HTML string
	}
	esc := url.PathEscape(id)
	if err := s.do(ctx, http.MethodGet, "/api/v1/message/"+esc, nil, &full); err != nil {
		return Message{}, err
	}
	m := Message{Summary: full.apiSummary.summary(), Text: full.Text, HTML: full.HTML}
	if err := s.do(ctx, http.MethodGet, "/api/v1/message/"+esc+"/headers", nil, &m.Headers); err != nil {
		return Message{}, err
	}
	if err := s.do(ctx, http.MethodGet, "/api/v1/message/"+esc+"/raw", nil, &m.Raw); err != nil {
		return Message{}, err
	}
	return m, nil
}

// WaitFor waits until a message to the address `to` (compared
// case-insensitively, display names ignored) has arrived that no earlier
// WaitFor returned, and returns the oldest such message. It fails the test
// after timeout; call it from the test's goroutine.
func (s *Server) WaitFor(t testing.TB, to string, timeout time.Duration) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last []Summary
	var lastErr error
	for {
		list, err := s.Messages(ctx)
		if err == nil {
			last, lastErr = list, nil
			for _, m := range slices.Backward(list) { // oldest first
				if s.isSeen(m.ID) || !slices.ContainsFunc(m.To, func(a Address) bool {
					return strings.EqualFold(a.Address, to)
				}) {
					continue
				}
				full, err := s.Get(ctx, m.ID)
				if err != nil {
					t.Fatalf("mailpittest: fetch message %s: %v", m.ID, err)
				}
				full.Created, full.Snippet = m.Created, m.Snippet
				s.markSeen(m.ID)
				return full
			}
		} else if ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			var got []string
			for _, m := range last {
				var rcpts []string
				for _, a := range m.To {
					rcpts = append(rcpts, a.Address)
				}
				got = append(got, fmt.Sprintf("%q to %s", m.Subject, strings.Join(rcpts, ",")))
			}
			t.Fatalf("mailpittest: no new message to %s within %s (last API error: %v); mailbox: %v",
				to, timeout, lastErr, got)
			return Message{}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) isSeen(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[id]
}

func (s *Server) markSeen(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[id] = true
}

// DeleteAll removes every stored message.
func (s *Server) DeleteAll(ctx context.Context) error {
	if err := s.do(ctx, http.MethodDelete, "/api/v1/messages", map[string][]string{"IDs": {}}, nil); err != nil {
		return err
	}
	s.mu.Lock()
	clear(s.seen)
	s.mu.Unlock()
	return nil
}

// ChaosTrigger makes one SMTP stage fail with ErrorCode (400-599) in
// Probability percent (0-100) of attempts.
type ChaosTrigger struct {
	ErrorCode   int
	Probability int
}

// Chaos configures Mailpit's failure injection; a zero trigger is off.
type Chaos struct {
	Sender         ChaosTrigger // fails MAIL FROM
	Recipient      ChaosTrigger // fails RCPT TO
	Authentication ChaosTrigger // fails AUTH
}

// SetChaos replaces the failure injection settings; SetChaos(ctx, Chaos{})
// turns it off again.
func (s *Server) SetChaos(ctx context.Context, c Chaos) error {
	return s.do(ctx, http.MethodPut, "/api/v1/chaos", c, nil)
}
