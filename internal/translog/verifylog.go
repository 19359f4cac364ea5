package translog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// This file is the client side: what someone who does not trust the
// operator runs (go run . verify-log) to check that the log they saw
// earlier is still the start of the log served now.

// ErrMismatch means verify-log found the log inconsistent with the saved
// checkpoint, or a signature that does not verify.
var ErrMismatch = errors.New("the consent log does not verify")

// JWK is an Ed25519 public key as an RFC 8037 OKP JSON Web Key.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// key returns the Ed25519 key of kid, or nil.
func (s *JWKS) key(kid string) (ed25519.PublicKey, error) {
	for _, k := range s.Keys {
		if k.Kid != kid {
			continue
		}
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			return nil, fmt.Errorf("key %q is not an Ed25519 key", kid)
		}
		b, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %q is malformed", kid)
		}
		return b, nil
	}
	return nil, nil
}

// Bundle is what a user saves: a checkpoint, the keys it was verified
// with (pinned: a later verification does not have to trust the server's
// key set for them), and optionally inclusion proofs. The Privacy Center's
// download and verify-log --save write it.
type Bundle struct {
	Log        string          `json:"log,omitempty"`
	Checkpoint string          `json:"checkpoint"`
	JWKS       *JWKS           `json:"jwks,omitempty"`
	Proofs     json.RawMessage `json:"proofs,omitempty"`
}

// SignedCheckpoint is a checkpoint whose signature was checked.
type SignedCheckpoint struct {
	CheckpointClaims
	Kid string
}

// VerifyCheckpointJWS checks a checkpoint's signature with the key its kid
// names in keys, its type and its form.
func VerifyCheckpointJWS(jws string, keys *JWKS) (*SignedCheckpoint, error) {
	parts := strings.Split(strings.TrimSpace(jws), ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	hb, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("JWS header: %w", err)
	}
	var h struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Typ  string          `json:"typ"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("JWS header: %w", err)
	}
	if h.Alg != "EdDSA" || h.Typ != CheckpointType || h.Crit != nil {
		return nil, fmt.Errorf("not a checkpoint: alg %q, typ %q", h.Alg, h.Typ)
	}
	pub, err := keys.key(h.Kid)
	if err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, fmt.Errorf("no key %q to verify it with", h.Kid)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil || !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, fmt.Errorf("the signature by key %q does not verify", h.Kid)
	}
	pb, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("JWS payload: %w", err)
	}
	c, err := ParseCheckpointClaims(pb)
	if err != nil {
		return nil, err
	}
	return &SignedCheckpoint{CheckpointClaims: c, Kid: h.Kid}, nil
}

// VerifyLogOptions configure VerifyLog.
type VerifyLogOptions struct {
	// URL is the server (https://host) or the log (https://host/.well-known/consent-log).
	URL string
	// Saved is the content of the saved checkpoint file: a Bundle, or a
	// bare compact JWS.
	Saved  []byte
	Client *http.Client
	// Out receives one line per check.
	Out io.Writer
}

// VerifyLog checks the log served at o.URL against a saved checkpoint:
// both signatures (the saved one with its pinned keys when the file has
// them), that the log did not shrink, and the RFC 9162 consistency proof
// from the saved tree to the current one. It returns the new bundle to
// save, and an error wrapping ErrMismatch on any mismatch.
func VerifyLog(ctx context.Context, o VerifyLogOptions) (*Bundle, error) {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, format+"\n", args...) }
	fail := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		say("FAIL  %s", msg)
		return fmt.Errorf("%w: %s", ErrMismatch, msg)
	}
	base, err := logBase(o.URL)
	if err != nil {
		return nil, err
	}
	saved, err := parseSaved(o.Saved)
	if err != nil {
		return nil, err
	}
	var server JWKS
	if err := getJSON(ctx, o.Client, base.origin+"/.well-known/jwks.json", &server); err != nil {
		return nil, err
	}
	newJWS, err := getText(ctx, o.Client, base.log+"/checkpoint")
	if err != nil {
		return nil, err
	}

	// The saved checkpoint: with the keys pinned in the file, which the
	// operator cannot change, else (a bare JWS) with the server's.
	oldKeys, how := saved.JWKS, "its pinned key"
	if oldKeys == nil {
		oldKeys, how = &server, "the server's key set (the file pins no key: save a bundle with --save to pin it)"
	}
	old, err := VerifyCheckpointJWS(saved.Checkpoint, oldKeys)
	if err != nil {
		return nil, fail("saved checkpoint: %v", err)
	}
	say("ok    saved checkpoint: tree size %d, root %s, signed by key %q, checked with %s", old.TreeSize, b64(old.RootHash), old.Kid, how)

	// The current checkpoint: a key pinned under its kid must be the key
	// the server publishes under it (no quiet key substitution).
	cur, err := VerifyCheckpointJWS(newJWS, &server)
	if err != nil {
		return nil, fail("current checkpoint: %v", err)
	}
	note := "a key the server publishes"
	if saved.JWKS != nil {
		pinned, err := saved.JWKS.key(cur.Kid)
		if err != nil {
			return nil, fail("pinned key %q: %v", cur.Kid, err)
		}
		live, _ := server.key(cur.Kid)
		switch {
		case pinned == nil:
			note = "a key new since the saved checkpoint (a rotation), taken from the server's key set"
		case !bytes.Equal(pinned, live):
			return nil, fail("the server publishes another key under the pinned kid %q", cur.Kid)
		default:
			note = "the pinned key"
		}
	}
	say("ok    current checkpoint: tree size %d, root %s, issued %s, signed by key %q (%s)", cur.TreeSize, b64(cur.RootHash), cur.IssuedAt, cur.Kid, note)

	if old.Log != "" && cur.Log != "" && old.Log != cur.Log {
		return nil, fail("the checkpoints name different logs: %q, %q", old.Log, cur.Log)
	}
	switch {
	case cur.TreeSize < old.TreeSize:
		return nil, fail("the log shrank from %d to %d leaves: entries were removed", old.TreeSize, cur.TreeSize)
	case cur.TreeSize == old.TreeSize:
		if !bytes.Equal(cur.RootHash, old.RootHash) {
			return nil, fail("the tree of %d leaves has another root now: the log was rewritten", cur.TreeSize)
		}
		say("ok    same tree size and root: nothing was appended, nothing changed")
	default:
		var proof struct {
			Hashes [][]byte `json:"hashes"`
		}
		u := fmt.Sprintf("%s/consistency?first=%d&second=%d", base.log, old.TreeSize, cur.TreeSize)
		if old.TreeSize > 0 {
			if err := getJSON(ctx, o.Client, u, &proof); err != nil {
				return nil, fail("consistency proof: %v", err)
			}
		}
		if err := VerifyConsistency(old.TreeSize, cur.TreeSize, proof.Hashes, old.RootHash, cur.RootHash); err != nil {
			return nil, fail("consistency from %d to %d leaves: %v: the log was rewritten", old.TreeSize, cur.TreeSize, err)
		}
		say("ok    consistency proof (%d hashes): the %d leaves of the saved tree are the start of today's %d; nothing was removed or rewritten",
			len(proof.Hashes), old.TreeSize, cur.TreeSize)
	}
	next := &Bundle{Log: cur.Log, Checkpoint: strings.TrimSpace(newJWS), JWKS: mergeKeys(saved.JWKS, &server)}
	return next, nil
}

// mergeKeys pins the saved keys and adds the server's new ones.
func mergeKeys(pinned, server *JWKS) *JWKS {
	out := &JWKS{}
	seen := map[string]bool{}
	for _, set := range []*JWKS{pinned, server} {
		if set == nil {
			continue
		}
		for _, k := range set.Keys {
			if !seen[k.Kid] {
				seen[k.Kid] = true
				out.Keys = append(out.Keys, k)
			}
		}
	}
	return out
}

func parseSaved(b []byte) (*Bundle, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var bd Bundle
		if err := json.Unmarshal(b, &bd); err != nil {
			return nil, fmt.Errorf("saved checkpoint file: %w", err)
		}
		if bd.Checkpoint == "" {
			return nil, errors.New("saved checkpoint file: no checkpoint in it")
		}
		return &bd, nil
	}
	return &Bundle{Checkpoint: string(b)}, nil
}

type logURLs struct{ origin, log string }

// logBase accepts the server's URL or the log's.
func logBase(raw string) (logURLs, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return logURLs{}, fmt.Errorf("--url %q: want the server's URL, e.g. https://consent.example.com", raw)
	}
	origin := u.Scheme + "://" + u.Host
	prefix := strings.TrimSuffix(u.Path, Path)
	return logURLs{origin: origin + prefix, log: origin + prefix + Path}, nil
}

func getText(ctx context.Context, c *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(b))
	}
	return string(b), nil
}

func getJSON(ctx context.Context, c *http.Client, u string, v any) error {
	s, err := getText(ctx, c, u)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// VerifyLogMain is the verify-log command:
//
//	consentgraph verify-log --checkpoint FILE --url https://consent.example.com [--save]
//
// It exits non-zero (returns an error) on any mismatch.
func VerifyLogMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify-log", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("checkpoint", "", "the checkpoint saved earlier: a bundle from the Privacy Center or --save, or a bare JWS (required)")
	server := fs.String("url", "", "the server's URL, e.g. https://consent.example.com (required)")
	save := fs.Bool("save", false, "after a successful check, write the current checkpoint (and keys) back to the file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: consentgraph verify-log --checkpoint FILE --url URL [--save]")
		fmt.Fprintln(stderr, "Checks that the consent log served at URL still starts with the log a saved checkpoint signed.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || *server == "" {
		fs.Usage()
		return errors.New("verify-log: --checkpoint and --url are required")
	}
	saved, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("verify-log: %w", err)
	}
	next, err := VerifyLog(ctx, VerifyLogOptions{URL: *server, Saved: saved, Out: stdout})
	if err != nil {
		return fmt.Errorf("verify-log: %w", err)
	}
	fmt.Fprintln(stdout, "the log is consistent with the saved checkpoint")
	if !*save {
		return nil
	}
	// A bare JWS becomes a bundle, so the keys are pinned from now on.
	out, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("verify-log: %w", err)
	}
	if b := bytes.TrimSpace(saved); len(b) > 0 && b[0] == '{' {
		// Keep the file's other content (proofs) beside the new checkpoint.
		var keep map[string]json.RawMessage
		if err := json.Unmarshal(b, &keep); err != nil {
			return fmt.Errorf("verify-log: %w", err)
		}
		cp, _ := json.Marshal(next.Checkpoint)
		keys, _ := json.Marshal(next.JWKS)
		keep["checkpoint"], keep["jwks"] = cp, keys
		if next.Log != "" {
			keep["log"], _ = json.Marshal(next.Log)
		}
		if out, err = json.MarshalIndent(keep, "", "  "); err != nil {
			return fmt.Errorf("verify-log: %w", err)
		}
	}
	if err := os.WriteFile(*file, out, 0o644); err != nil {
		return fmt.Errorf("verify-log: save: %w", err)
	}
	fmt.Fprintf(stdout, "saved the current checkpoint to %s\n", *file)
	return nil
}
