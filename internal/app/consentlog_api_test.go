package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/consentgraph/consentgraph/internal/app/apptest"
	"github.com/consentgraph/consentgraph/internal/config"
	"github.com/consentgraph/consentgraph/internal/store/mongostore"
	"github.com/consentgraph/consentgraph/internal/store/sqlite"
	"github.com/consentgraph/consentgraph/internal/store/storetest"
	"github.com/consentgraph/consentgraph/internal/translog"
	"github.com/consentgraph/consentgraph/internal/translog/rfc9162test"
)

// The tests here check the public consent log from the outside, the way a
// user or an auditor would: over HTTP and GraphQL, with the independent
// RFC 9162 verifier of package rfc9162test (not the server's code) and
// crypto/ed25519 against the published JWKS.

const logHistoryQuery = `{ me { id ledgerIntact consentHistory(first: 100) { edges { node {
	sequence hash receipt logProof { leafIndex treeSize leafHash leafData hashes checkpoint } } } } } }`

type logProofView struct {
	LeafIndex, TreeSize int
	LeafHash, LeafData  string
	Hashes              []string
	Checkpoint          string
}

type logHistory struct {
	ID             string
	LedgerIntact   bool
	ConsentHistory struct {
		Edges []struct {
			Node struct {
				Sequence      int
				Hash, Receipt string
				LogProof      *logProofView
			}
		}
	}
}

func logHistoryOf(t *testing.T, c *apptest.Client) logHistory {
	t.Helper()
	var out struct{ Me logHistory }
	c.Do(t, logHistoryQuery, nil).Decode(t, &out)
	return out.Me
}

// waitLogged waits until every event of the user has its proof.
func waitLogged(t *testing.T, c *apptest.Client) logHistory {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		h := logHistoryOf(t, c)
		all := true
		for _, e := range h.ConsentHistory.Edges {
			all = all && e.Node.LogProof != nil
		}
		if all {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("events not logged after 15s: %+v", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAuditLogged waits until the store holds no unlogged audit entry.
func waitAuditLogged(t *testing.T, s *apptest.Server) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		es, err := s.Store().Audit().Unlogged(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("audit entries not logged after 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// checkpointOf fetches the current checkpoint and verifies it with
// crypto/ed25519 against the server's JWKS.
func checkpointOf(t *testing.T, s *apptest.Server) (string, *rfc9162test.Checkpoint) {
	t.Helper()
	code, jws := httpGet(t, s.URL+"/.well-known/consent-log/checkpoint")
	if code != http.StatusOK {
		t.Fatalf("checkpoint: %d %s", code, jws)
	}
	return string(jws), verifyCheckpoint(t, s, string(jws))
}

func verifyCheckpoint(t *testing.T, s *apptest.Server, jws string) *rfc9162test.Checkpoint {
	t.Helper()
	_, jwks := httpGet(t, s.URL+"/.well-known/jwks.json")
	cp, err := rfc9162test.VerifyCheckpoint(jws, jwks)
	if err != nil {
		t.Fatalf("checkpoint %s: %v", jws, err)
	}
	if _, err := time.Parse(time.RFC3339, cp.IssuedAt); err != nil {
		t.Fatalf("issuedAt %q: %v", cp.IssuedAt, err)
	}
	return cp
}

func consistencyOf(t *testing.T, s *apptest.Server, first, second uint64) [][]byte {
	t.Helper()
	code, body := httpGet(t, fmt.Sprintf("%s/.well-known/consent-log/consistency?first=%d&second=%d", s.URL, first, second))
	if code != http.StatusOK {
		t.Fatalf("consistency %d→%d: %d %s", first, second, code, body)
	}
	var p struct{ Hashes [][]byte }
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return p.Hashes
}

func b64d(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return b
}

func TestConsentLogProofsVerifyIndependently(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "log.user")
	roots := map[uint64][]byte{}
	for i := range 24 {
		changeConsent(t, c, i%2 == 0, "newsletter")
		waitLogged(t, c)
		_, cp := checkpointOf(t, s)
		roots[cp.TreeSize] = cp.RootHash
	}
	if len(roots) < 10 {
		t.Fatalf("only %d distinct tree sizes seen", len(roots))
	}
	// Every pair of checkpoints seen is consistent, by the RFC's algorithm.
	for m, rm := range roots {
		for n, rn := range roots {
			if m > n {
				continue
			}
			p := consistencyOf(t, s, m, n)
			if err := rfc9162test.VerifyConsistency(m, n, rm, rn, p); err != nil {
				t.Fatalf("consistency %d→%d: %v", m, n, err)
			}
			if len(p) > 0 {
				p[len(p)/2][3] ^= 1
				if rfc9162test.VerifyConsistency(m, n, rm, rn, p) == nil {
					t.Fatalf("tampered consistency proof %d→%d verified", m, n)
				}
			}
		}
	}

	// Grow the log past 70 leaves, then check proofs from and to every size
	// up to 70, and between random pairs, against roots computed here from
	// the stored leaves by RFC 9162's definition. (Every pair of sizes up to
	// 70 is checked on the log itself in package translog.)
	for i := range 48 {
		changeConsent(t, c, i%2 == 0, "surveys")
	}
	h := waitLogged(t, c)
	leaves, err := s.Store().Translog().Leaves(context.Background(), 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	_, now := checkpointOf(t, s)
	if now.TreeSize < 72 || uint64(len(leaves)) < now.TreeSize {
		t.Fatalf("tree of %d leaves, %d stored", now.TreeSize, len(leaves))
	}
	var leafHashes [][]byte
	for _, l := range leaves[:now.TreeSize] {
		leafHashes = append(leafHashes, rfc9162test.LeafHash(l.Data))
	}
	if !bytes.Equal(rfc9162test.Root(leafHashes), now.RootHash) {
		t.Fatal("the checkpoint's root is not the root of the stored leaves")
	}
	root := func(n uint64) []byte { return rfc9162test.Root(leafHashes[:n]) }
	check := func(m, n uint64) {
		if err := rfc9162test.VerifyConsistency(m, n, root(m), root(n), consistencyOf(t, s, m, n)); err != nil {
			t.Fatalf("consistency %d→%d: %v", m, n, err)
		}
	}
	for m := uint64(1); m <= 70; m++ {
		check(1, m)
		check(m, 70)
		check(m, now.TreeSize)
	}
	for range 100 {
		n := 1 + rand.Uint64N(now.TreeSize)
		check(1+rand.Uint64N(n), n)
	}

	// Every event's inclusion proof, all against the one checkpoint of the
	// request, whose signature checks out.
	if !h.LedgerIntact || len(h.ConsentHistory.Edges) != 72 {
		t.Fatalf("history: intact %v, %d events", h.LedgerIntact, len(h.ConsentHistory.Edges))
	}
	first := h.ConsentHistory.Edges[0].Node.LogProof.Checkpoint
	cp := verifyCheckpoint(t, s, first)
	if !strings.HasSuffix(cpLog(t, first), translog.Path) {
		t.Errorf("checkpoint names the log %q", cpLog(t, first))
	}
	for _, e := range h.ConsentHistory.Edges {
		p := e.Node.LogProof
		if p.Checkpoint != first {
			t.Fatalf("event %d is proven against another checkpoint than event 1", e.Node.Sequence)
		}
		if uint64(p.TreeSize) != cp.TreeSize {
			t.Fatalf("proof of tree size %d against a checkpoint of %d", p.TreeSize, cp.TreeSize)
		}
		data, leafHash := b64d(t, p.LeafData), b64d(t, p.LeafHash)
		if !bytes.Equal(rfc9162test.LeafHash(data), leafHash) {
			t.Fatalf("event %d: leafHash is not SHA-256(0x00 || leafData)", e.Node.Sequence)
		}
		// The leaf names the event by its receipt id and ledger hash only.
		var leaf map[string]any
		if err := json.Unmarshal(data, &leaf); err != nil {
			t.Fatal(err)
		}
		claims := receiptClaims(t, e.Node.Receipt)
		if leaf["v"] != 1.0 || leaf["kind"] != "consent" || leaf["id"] != claims["jti"] || leaf["hash"] != e.Node.Hash || len(leaf) != 5 {
			t.Fatalf("event %d: leaf %s", e.Node.Sequence, data)
		}
		if strings.Contains(string(data), h.ID) || strings.Contains(string(data), "log.user") {
			t.Fatalf("leaf %s names the user", data)
		}
		if claims["log"] != cpLog(t, first) {
			t.Fatalf("receipt names the log %v, the checkpoint %q", claims["log"], cpLog(t, first))
		}
		hashes := make([][]byte, len(p.Hashes))
		for i, x := range p.Hashes {
			hashes[i] = b64d(t, x)
		}
		if err := rfc9162test.VerifyInclusion(uint64(p.LeafIndex), cp.TreeSize, leafHash, hashes, cp.RootHash); err != nil {
			t.Fatalf("inclusion of event %d: %v", e.Node.Sequence, err)
		}
		if len(hashes) > 0 {
			hashes[0][0] ^= 1
			if rfc9162test.VerifyInclusion(uint64(p.LeafIndex), cp.TreeSize, leafHash, hashes, cp.RootHash) == nil {
				t.Fatalf("tampered inclusion proof of event %d verified", e.Node.Sequence)
			}
		}
	}

	// Bad parameters are refused with a stable code.
	for _, q := range []string{"", "first=x&second=2", "first=0&second=2", "first=5&second=3", fmt.Sprintf("first=1&second=%d", cp.TreeSize+100)} {
		code, body := httpGet(t, s.URL+"/.well-known/consent-log/consistency?"+q)
		var e struct {
			Errors []struct {
				Message    string
				Extensions struct{ Code string }
			}
		}
		if err := json.Unmarshal(body, &e); err != nil || code != http.StatusBadRequest || len(e.Errors) != 1 || e.Errors[0].Extensions.Code != "BAD_USER_INPUT" {
			t.Errorf("consistency?%s: %d %s", q, code, body)
		}
	}
}

func receiptClaims(t *testing.T, jws string) map[string]any {
	t.Helper()
	parts := strings.Split(jws, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func cpLog(t *testing.T, jws string) string {
	t.Helper()
	s, _ := receiptClaims(t, jws)["log"].(string)
	return s
}

// tamperHistory rewinds the user's ledger to event 1, the way an operator
// hiding the last event would: the event deleted, head and state put back
// to match (so the hash chain alone looks fine).
func tamperHistory(t *testing.T, s *apptest.Server, uid, h1 string) {
	t.Helper()
	storetest.Tamper(t, s.Store(), `DELETE FROM consent_events WHERE user_id = ? AND seq = 2`, []any{uid},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			r, err := db.Collection("consent_events").DeleteOne(ctx, bson.D{{Key: "userId", Value: uid}, {Key: "seq", Value: 2}})
			if err != nil {
				return 0, err
			}
			return r.DeletedCount, nil
		})
	storetest.Tamper(t, s.Store(), `UPDATE users SET consent_head = 1, consent_head_hash = ? WHERE id = ?`, []any{h1, uid},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("users").UpdateOne(ctx, bson.D{{Key: "_id", Value: uid}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "consent.head", Value: 1}, {Key: "consent.headHash", Value: h1}}}}))
		})
	storetest.Tamper(t, s.Store(), `DELETE FROM consent_state WHERE user_id = ? AND purpose = 'surveys'`, []any{uid},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("users").UpdateOne(ctx, bson.D{{Key: "_id", Value: uid}},
				bson.D{{Key: "$unset", Value: bson.D{{Key: "consent.state.surveys", Value: ""}}}}))
		})
}

func TestDeletedLastLedgerEventIsDetectedByTheLog(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "truncated")
	changeConsent(t, c, true, "newsletter")
	changeConsent(t, c, true, "surveys")
	h := waitLogged(t, c)
	if !h.LedgerIntact || len(h.ConsentHistory.Edges) != 2 {
		t.Fatalf("honest ledger: %+v", h)
	}
	tamperHistory(t, s, h.ID, h.ConsentHistory.Edges[0].Node.Hash)
	after := logHistoryOf(t, c)
	if len(after.ConsentHistory.Edges) != 1 {
		t.Fatalf("tampering did not take: %+v", after)
	}
	if after.LedgerIntact {
		t.Fatal("a deleted last event with head rewound was not detected")
	}
}

func TestRewrittenLogLeafIsDetected(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "leafy")
	changeConsent(t, c, true, "newsletter")
	h := waitLogged(t, c)
	if !h.LedgerIntact {
		t.Fatal("honest ledger reported broken")
	}
	// An operator rewrites the event's leaf (data and hash) in the store:
	// it no longer hashes up to the root the log's checkpoints sign.
	p := h.ConsentHistory.Edges[0].Node.LogProof
	data := []byte(`{"v":1,"kind":"consent","id":"forged","hash":"00","at":"2020-01-01T00:00:00.000Z"}`)
	hash := rfc9162test.LeafHash(data)
	storetest.Tamper(t, s.Store(), `UPDATE log_leaves SET data = ?, hash = ? WHERE idx = ?`, []any{data, hash, p.LeafIndex},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("consent_log_leaves").UpdateOne(ctx, bson.D{{Key: "_id", Value: int64(p.LeafIndex)}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "data", Value: data}, {Key: "hash", Value: hash}}}}))
		})
	if logHistoryOf(t, c).LedgerIntact {
		t.Fatal("a rewritten leaf was not detected")
	}
}

func TestAlteredLedgerEventIsDetectedAgainstTheLog(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "altered")
	changeConsent(t, c, true, "newsletter")
	h := waitLogged(t, c)
	if !h.LedgerIntact {
		t.Fatal("honest ledger reported broken")
	}
	// The event's hash is rewritten (a forger recomputing the chain): its
	// leaf in the log no longer matches.
	storetest.Tamper(t, s.Store(), `UPDATE consent_events SET hash = 'ff' || substr(hash, 3) WHERE user_id = ? AND seq = 1`, []any{h.ID},
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("consent_events").UpdateOne(ctx, bson.D{{Key: "userId", Value: h.ID}, {Key: "seq", Value: 1}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "hash", Value: "ff"}}}}))
		})
	if logHistoryOf(t, c).LedgerIntact {
		t.Fatal("an altered event was not detected")
	}
}

func TestDeletedLastAuditEntryIsDetectedByTheLog(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, func(c *config.Config) { c.AdminUsername, c.AdminPassword = "auditor", "auditor password" })
	u := s.Register(t, "audited.twice")
	for range 2 {
		if r := u.Do(t, `{ exportMyData { signature } }`, nil); len(r.Errors) > 0 {
			t.Fatal(string(r.Raw))
		}
	}
	waitAuditLogged(t, s)
	admin := s.Client()
	var login struct{ Login struct{ Token string } }
	admin.Do(t, `mutation { login(username: "auditor", password: "auditor password") { token } }`, nil).Decode(t, &login)
	var out struct{ AuditLog struct{ Intact bool } }
	admin.Do(t, `{ auditLog(first: 10) { intact } }`, nil).Decode(t, &out)
	if !out.AuditLog.Intact {
		t.Fatal("honest audit log reported broken")
	}
	storetest.Tamper(t, s.Store(), `DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)`, nil,
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			var last bson.M
			if err := db.Collection("audit_log").FindOne(ctx, bson.D{}, optsLast()).Decode(&last); err != nil {
				return 0, err
			}
			r, err := db.Collection("audit_log").DeleteOne(ctx, bson.D{{Key: "_id", Value: last["_id"]}})
			if err != nil {
				return 0, err
			}
			return r.DeletedCount, nil
		})
	admin.Do(t, `{ auditLog(first: 10) { intact } }`, nil).Decode(t, &out)
	if out.AuditLog.Intact {
		t.Fatal("a deleted last audit entry was not detected")
	}
}

// TestOldCheckpointDetectsRewriteAndTruncation saves a checkpoint as a
// user would, then shows verify-log accepts honest growth and rejects a
// log rebuilt with one leaf changed, and one cut short.
func TestOldCheckpointDetectsRewriteAndTruncation(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "holder")
	changeConsent(t, c, true, "newsletter")
	changeConsent(t, c, true, "surveys")
	waitLogged(t, c)
	file := filepath.Join(t.TempDir(), "checkpoint.json")
	jws, cp := checkpointOf(t, s)
	_, jwks := httpGet(t, s.URL+"/.well-known/jwks.json")
	bundle, _ := json.Marshal(map[string]any{"checkpoint": jws, "jwks": json.RawMessage(jwks)})
	if err := os.WriteFile(file, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func() (string, error) {
		var out bytes.Buffer
		err := translog.VerifyLogMain(context.Background(), []string{"--checkpoint", file, "--url", s.URL}, &out, io.Discard)
		return out.String(), err
	}
	// Honest growth verifies.
	changeConsent(t, c, false, "newsletter")
	waitLogged(t, c)
	if out, err := verify(); err != nil {
		t.Fatalf("honest log: %v\n%s", err, out)
	}

	// The operator rebuilds the log with leaf 0 changed (plus one more
	// leaf, so the tree is not smaller): a complete, self-consistent log,
	// but not the one the checkpoint signed.
	ctx := context.Background()
	leaves, err := s.Store().Translog().Leaves(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(leaves)) <= cp.TreeSize {
		t.Fatalf("%d leaves, checkpoint of %d", len(leaves), cp.TreeSize)
	}
	wipeLog(t, s)
	forged, err := translog.New(translog.Options{Store: s.Store().Translog(), Signer: s.App.Signing})
	if err != nil {
		t.Fatal(err)
	}
	var items []translog.Item
	for i, l := range leaves {
		data := l.Data
		if i == 0 {
			data = bytes.Replace(data, []byte(`"v":1`), []byte(`"v":1 `), 1)
		}
		items = append(items, translog.Item{ID: l.Item, Data: data, At: l.At})
	}
	items = append(items, translog.Item{ID: "extra", Data: []byte("{}"), At: time.Now()})
	if err := forged.Ensure(ctx, items); err != nil {
		t.Fatal(err)
	}
	out, err := verify()
	if !errors.Is(err, translog.ErrMismatch) || !strings.Contains(out, "consistency") {
		t.Fatalf("rewritten log: err %v\n%s", err, out)
	}

	// Cut short: the log ends before the saved checkpoint's size.
	wipeLog(t, s)
	if err := forged.Ensure(ctx, items[:cp.TreeSize-1]); err != nil {
		t.Fatal(err)
	}
	out, err = verify()
	if !errors.Is(err, translog.ErrMismatch) || !strings.Contains(out, "shrank") {
		t.Fatalf("truncated log: err %v\n%s", err, out)
	}
}

// wipeLog deletes the stored log (leaves, subtree hashes, head).
func wipeLog(t *testing.T, s *apptest.Server) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch db := s.Store().(type) {
	case *sqlite.DB:
		for _, q := range []string{`DELETE FROM log_leaves`, `DELETE FROM log_nodes`, `DELETE FROM log_head`} {
			if _, err = db.ExecRaw(ctx, q); err != nil {
				break
			}
		}
	case *mongostore.DB:
		for coll, filter := range map[string]bson.D{"consent_log_leaves": {}, "consent_log_nodes": {}, "consent_log_state": {{Key: "_id", Value: "head"}}} {
			if _, err = db.Database().Collection(coll).DeleteMany(ctx, filter); err != nil {
				break
			}
		}
	default:
		t.Fatalf("cannot wipe the log of a %T", db)
	}
	if err != nil {
		t.Fatalf("wipe the log: %v", err)
	}
}

func optsLast() *options.FindOneOptionsBuilder {
	return options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}})
}

// TestUnloggedRecordsAreLoggedAfterRestart stops a server as a crash
// between a commit and its append would leave it — the event stored with
// its "not yet logged" mark, the log without it — and shows the restarted
// server's start-up sweep logs it.
func TestUnloggedRecordsAreLoggedAfterRestart(t *testing.T) {
	t.Parallel()
	cfg := apptest.ConfigOn(t, apptest.Kind()) // a store of its own, kept across restarts
	s := apptest.StartWith(t, cfg)
	c := s.Register(t, "restarted")
	changeConsent(t, c, true, "newsletter")
	waitLogged(t, c)
	s.Close()
	st := apptest.StartWith(t, cfg) // only to reach the store
	wipeLog(t, st)
	storetest.Tamper(t, st.Store(), `UPDATE consent_events SET logged = 0`, nil,
		func(ctx context.Context, db *mongo.Database) (int64, error) {
			return modified(db.Collection("consent_events").UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "logged", Value: false}}}}))
		})
	st.Close()

	s2 := apptest.StartWith(t, cfg)
	c2 := s2.Client()
	c2.Token = c.Token
	h := waitLogged(t, c2)
	if !h.LedgerIntact || len(h.ConsentHistory.Edges) != 1 {
		t.Fatalf("after the restart: %+v", h)
	}
}

// TestSavingABareCheckpointPinsItsKeys: a checkpoint saved as a bare JWS
// is checked against the server's keys; --save turns the file into a
// bundle, so the next check uses the keys pinned in it.
func TestSavingABareCheckpointPinsItsKeys(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	c := s.Register(t, "pinner")
	changeConsent(t, c, true, "newsletter")
	waitLogged(t, c)
	file := filepath.Join(t.TempDir(), "checkpoint.jws")
	jws, _ := checkpointOf(t, s)
	if err := os.WriteFile(file, []byte(jws+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := translog.VerifyLogMain(context.Background(), append([]string{"--checkpoint", file, "--url", s.URL}, args...), &out, io.Discard); err != nil {
			t.Fatalf("verify-log %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	if out := run("--save"); !strings.Contains(out, "server's key set") {
		t.Errorf("a bare JWS pins no key, so the server's were used: %s", out)
	}
	var saved translog.Bundle
	raw, _ := os.ReadFile(file)
	if err := json.Unmarshal(raw, &saved); err != nil || saved.JWKS == nil || saved.Checkpoint == "" {
		t.Fatalf("--save did not write a bundle with keys: %v\n%s", err, raw)
	}
	if out := run(); !strings.Contains(out, "its pinned key") {
		t.Errorf("after --save the saved checkpoint is checked with its pinned key: %s", out)
	}
}
