// Package crashtest kills the real server binary with SIGKILL while it
// works and checks that nothing acknowledged was lost.
package crashtest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

const password = "correct horse battery"

var purposes = []string{"newsletter", "surveys"}

type server struct {
	t    *testing.T
	bin  string
	env  []string
	url  string
	cmd  *exec.Cmd
	logs *bytes.Buffer
	mu   sync.Mutex
}

func (s *server) start() {
	s.t.Helper()
	s.logs.Reset()
	cmd := exec.Command(s.bin)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: s.logs, mu: &s.mu}, &lockedWriter{w: s.logs, mu: &s.mu}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start server: %v", err)
	}
	s.cmd = cmd
	s.url = ""
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if s.url == "" {
			if m := listening.FindStringSubmatch(s.logText()); m != nil {
				s.url = m[1]
			} else {
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		res, err := http.Get(s.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.kill()
	s.t.Fatalf("server did not get ready:\n%s", s.logText())
}

// listening finds the server's base URL in its start-up log line.
var listening = regexp.MustCompile(`graphql=(http://127\.0\.0\.1:[0-9]+)/graphql`)

func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type gqlResult struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

var client = &http.Client{Timeout: 100 * time.Second}

// call returns the result, or an error when no answer arrived (the server
// died): then the change may or may not have happened.
func call(url, token, query string, vars map[string]any) (*gqlResult, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	var r gqlResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("status %d: %s", res.StatusCode, raw)
	}
	return &r, nil
}

// account is what the driver knows of one user: what the server
// acknowledged, and the one change that was in flight when it died.
type account struct {
	name, token string
	acked       map[string]bool // purpose -> granted, as acknowledged
	maybe       map[string]bool // purpose -> value of an unacknowledged change
	deleted     bool            // erasure acknowledged
	maybeDelete bool
}

func randn(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}

// drive signs users up and changes their consent until stop closes or the
// server stops answering; every account it returns is as far as known.
func drive(url string, worker, round int, stop <-chan struct{}) []*account {
	var out []*account
	for n := 0; ; n++ {
		select {
		case <-stop:
			return out
		default:
		}
		name := fmt.Sprintf("w%d-r%d-%d", worker, round, n)
		r, err := call(url, "", `mutation($u: String!, $p: String!) { register(input: {username: $u, password: $p}) { token } }`,
			map[string]any{"u": name, "p": password})
		if err != nil || len(r.Errors) > 0 {
			return out // unacknowledged sign-up: not tracked
		}
		var reg struct{ Token string }
		_ = json.Unmarshal(r.Data["register"], &reg)
		a := &account{name: name, token: reg.Token, acked: map[string]bool{}, maybe: map[string]bool{}}
		out = append(out, a)
		for range 2 + randn(5) {
			if randn(12) == 0 {
				r, err := call(url, a.token, `mutation($p: String!) { deleteMyAccount(password: $p) }`, map[string]any{"p": password})
				if err != nil {
					a.maybeDelete = true
					return out
				}
				if len(r.Errors) > 0 {
					a.maybeDelete = true // refused for a reason of its own; do not guess
					break
				}
				a.deleted = true
				break
			}
			p := purposes[randn(len(purposes))]
			grant := randn(2) == 0
			op := "withdrawConsent"
			if grant {
				op = "grantConsent"
			}
			r, err := call(url, a.token, `mutation($p: ID!) { `+op+`(purpose: $p) { changed } }`, map[string]any{"p": p})
			if err != nil {
				a.maybe[p] = grant
				return out
			}
			if len(r.Errors) > 0 {
				a.maybe[p] = grant
				break
			}
			a.acked[p] = grant
		}
	}
}

func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "consentgraph")
	build := exec.Command("go", "build", "-o", bin, "github.com/consentgraph/consentgraph")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the server: %v\n%s", err, out)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	// A webhook processor for surveys: the outbox must deliver every item,
	// retrying across the crashes under the same idempotency key.
	hook := newReceiver()
	defer hook.Close()
	cfgFile := filepath.Join(dir, "consentgraph.yaml")
	yaml := "processors:\n  - name: crash-hook\n    type: webhook\n    purpose: surveys\n" +
		"    fields: [user.demographic.age_band]\n    settings: {url: \"" + hook.URL + "/hook\"}\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// Port 0: each start takes a fresh port and says which in its log, so a
	// restart never races another process for the port it had before.
	s := &server{t: t, bin: bin, logs: &bytes.Buffer{}, env: append(os.Environ(),
		"CONSENTGRAPH_ADDR=127.0.0.1:0",
		"CONSENTGRAPH_DATA_DIR="+filepath.Join(dir, "data"),
		"CONSENTGRAPH_MONGODB_URI=",
		"CONSENTGRAPH_MASTER_KEY="+base64.StdEncoding.EncodeToString(key),
		"CONSENTGRAPH_ADMIN_USERNAME=crash-admin",
		"CONSENTGRAPH_ADMIN_PASSWORD="+password,
		"CONSENTGRAPH_RATE_LIMITS=false",
		"CONSENTGRAPH_ARGON2_MEMORY_KIB=19456",
		"CONSENTGRAPH_LOG_LEVEL=info", // the start-up line names the address
		"CONSENTGRAPH_REQUEST_TIMEOUT=90s",
		"CONSENTGRAPH_CONFIG="+cfgFile,
	)}
	defer s.kill()

	var all []*account
	const workers = 4
	for round := range 3 {
		s.start()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got := drive(s.url, w, round, stop)
				mu.Lock()
				all = append(all, got...)
				mu.Unlock()
			}()
		}
		time.Sleep(time.Duration(800+randn(1500)) * time.Millisecond)
		s.kill() // SIGKILL in the middle of the stream
		close(stop)
		wg.Wait()
	}
	s.start()
	defer s.kill()
	if len(all) < 10 {
		t.Fatalf("only %d sign-ups acknowledged; the test proves little\n%s", len(all), s.logText())
	}

	checked, changes := 0, 0
	for _, a := range all {
		r, err := call(s.url, a.token, `{ me { username } exportMyData { document } }`, nil)
		if err != nil {
			t.Fatalf("after restart: %v", err)
		}
		var me struct{ Username string }
		_ = json.Unmarshal(r.Data["me"], &me)
		if a.deleted {
			if me.Username != "" {
				t.Errorf("%s: erasure was acknowledged, but the account is still there", a.name)
			}
			continue
		}
		if me.Username == "" {
			if !a.maybeDelete {
				t.Errorf("%s: acknowledged sign-up lost (%v)", a.name, r.Errors)
			}
			continue
		}
		var export struct{ Document string }
		_ = json.Unmarshal(r.Data["exportMyData"], &export)
		var doc struct {
			Consent struct {
				Consents []struct {
					Purpose string
					Granted bool
				}
				Ledger []struct {
					Purpose string `json:"purpose"`
					Action  string `json:"action"`
				}
				LedgerIntact bool `json:"ledgerIntact"`
			}
		}
		if err := json.Unmarshal([]byte(export.Document), &doc); err != nil {
			t.Fatalf("%s: export does not parse: %v (%v)", a.name, err, r.Errors)
		}
		if !doc.Consent.LedgerIntact {
			t.Errorf("%s: ledger not intact after the crashes", a.name)
		}
		current := map[string]bool{}
		for _, c := range doc.Consent.Consents {
			current[c.Purpose] = c.Granted
		}
		last := map[string]string{}
		for _, e := range doc.Consent.Ledger {
			last[e.Purpose] = e.Action
		}
		for _, p := range purposes {
			want, acked := a.acked[p]
			alt, inFlight := a.maybe[p]
			got := current[p]
			if acked && got != want && !(inFlight && got == alt) {
				t.Errorf("%s: %s granted=%v, acknowledged %v", a.name, p, got, want)
			}
			if acked || inFlight {
				changes++
			}
			if act, ok := last[p]; ok && (act == "GRANT") != got {
				t.Errorf("%s: current consent to %s is %v, the ledger's last event %s", a.name, p, got, act)
			}
		}
		checked++
	}

	admin, err := call(s.url, "", `mutation($p: String!) { login(username: "crash-admin", password: $p) { token } }`, map[string]any{"p": password})
	if err != nil || len(admin.Errors) > 0 {
		t.Fatalf("admin login: %v %v", err, admin)
	}
	var tok struct{ Token string }
	_ = json.Unmarshal(admin.Data["login"], &tok)
	r, err := call(s.url, tok.Token, `mutation { reconcileDemographics { usersCounted drift membersRepaired cellsRepaired } }`, nil)
	if err != nil || len(r.Errors) > 0 {
		t.Fatalf("reconcile: %v %+v", err, r)
	}
	var rep struct{ UsersCounted, Drift, MembersRepaired, CellsRepaired int }
	_ = json.Unmarshal(r.Data["reconcileDemographics"], &rep)
	if rep.Drift != 0 || rep.CellsRepaired != 0 {
		t.Errorf("demographic cells differ from a recount after the crashes: %+v", rep)
	}
	checkOutbox(t, s.url, tok.Token, hook)
	if checked < 5 || changes < 5 {
		t.Fatalf("checked %d accounts with %d consent changes; too few to prove anything", checked, changes)
	}
	t.Logf("%d sign-ups over 3 crashes, %d accounts checked, %d consent changes, reconcile %+v", len(all), checked, changes, rep)
}

// receiver is the webhook endpoint: it counts deliveries per webhook-id.
type receiver struct {
	*httptest.Server
	mu  sync.Mutex
	ids map[string]int
}

func newReceiver() *receiver {
	r := &receiver{ids: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.ids[req.Header.Get("webhook-id")]++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	return r
}

type outboxNode struct {
	ID, Processor, State string
}

// checkOutbox waits until the outbox has no pending work and checks that
// every item was delivered (under its own idempotency key), none is dead,
// and nothing arrived that is not an item.
func checkOutbox(t *testing.T, url, token string, hook *receiver) {
	t.Helper()
	var items []outboxNode
	deadline := time.Now().Add(40 * time.Second)
	for {
		items = nil
		after := ""
		for {
			r, err := call(url, token, `query($a: String) { outbox(first: 100, after: $a) { edges { node { id processor state } } pageInfo { hasNextPage endCursor } } }`,
				map[string]any{"a": nullable(after)})
			if err != nil || len(r.Errors) > 0 {
				t.Fatalf("outbox: %v %+v", err, r)
			}
			var page struct {
				Edges    []struct{ Node outboxNode }
				PageInfo struct {
					HasNextPage bool
					EndCursor   string
				}
			}
			_ = json.Unmarshal(r.Data["outbox"], &page)
			for _, e := range page.Edges {
				items = append(items, e.Node)
			}
			if !page.PageInfo.HasNextPage {
				break
			}
			after = page.PageInfo.EndCursor
		}
		open := 0
		for _, it := range items {
			if it.State == "PENDING" || it.State == "WAITING" {
				open++
			}
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d outbox items still open after the crashes", open, len(items))
		}
		time.Sleep(500 * time.Millisecond)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	known := map[string]bool{}
	done := 0
	for _, it := range items {
		known[it.ID] = true
		switch it.State {
		case "DEAD":
			t.Errorf("outbox item %s is dead after the crashes", it.ID)
		case "DONE":
			done++
			if hook.ids[it.ID] == 0 {
				t.Errorf("outbox item %s is DONE but never reached the processor", it.ID)
			}
		}
	}
	for id := range hook.ids {
		if !known[id] {
			t.Errorf("the processor received webhook-id %q, which is no outbox item", id)
		}
	}
	if done == 0 {
		t.Error("no outbox item was delivered; the outbox check proves nothing")
	}
	t.Logf("outbox: %d items, %d delivered, %d distinct webhook-ids", len(items), done, len(hook.ids))
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
