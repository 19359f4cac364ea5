package translog

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
)

// Path is where the log is served; receipts name PublicURL + Path.
const Path = "/.well-known/consent-log"

// Routes serves the log's public endpoints on mux:
//
//	GET Path                               what the log is and where its parts are
//	GET Path/checkpoint                    the current checkpoint, a compact JWS
//	GET Path/consistency?first=M&second=N  {"hashes": [...]}, the RFC 9162 proof
//
// Anyone may call them: the log holds no personal data.
func (l *Log) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+Path, l.serveIndex)
	mux.HandleFunc("GET "+Path+"/checkpoint", l.serveCheckpoint)
	mux.HandleFunc("GET "+Path+"/consistency", l.serveConsistency)
}

// serveIndex describes the log, for whoever follows the URL in a receipt.
func (l *Log) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	writeJSON(w, http.StatusOK, map[string]any{
		"description": "Append-only Merkle log (RFC 9162 hashing) of every consent event and audit entry of this service. " +
			"Leaf data is {\"v\":1,\"kind\":\"consent\"|\"audit\",\"id\":\"<receipt id | audit sequence number>\",\"hash\":\"<hex chain hash of the record>\",\"at\":\"<time>\"}. Checkpoints are compact JWS (EdDSA) verifiable with /.well-known/jwks.json.",
		"checkpoint":  Path + "/checkpoint",
		"consistency": Path + "/consistency?first=M&second=N",
		"jwks":        "/.well-known/jwks.json",
		"hashing":     "RFC 9162 §2.1.1: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right)",
	})
}

func (l *Log) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := l.Checkpoint(r.Context())
	if err != nil {
		l.log.ErrorContext(r.Context(), "consent log checkpoint failed", "err", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "the checkpoint could not be made; try again")
		return
	}
	// The tree grows with every consent change: a verifier may use a
	// checkpoint a few seconds old, no older.
	w.Header().Set("Cache-Control", "public, max-age=5")
	w.Header().Set("Content-Type", "application/jose")
	_, _ = w.Write([]byte(cp.JWS))
}

func (l *Log) serveConsistency(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	first, err1 := strconv.ParseInt(q.Get("first"), 10, 64)
	second, err2 := strconv.ParseInt(q.Get("second"), 10, 64)
	if err1 != nil || err2 != nil {
		writeError(w, http.StatusBadRequest, codeBadInput, "first and second must be tree sizes (whole numbers), e.g. ?first=10&second=20")
		return
	}
	proof, err := l.ConsistencyProof(r.Context(), first, second)
	if errors.Is(err, ErrRange) {
		writeError(w, http.StatusBadRequest, codeBadInput, err.Error())
		return
	}
	if err != nil {
		l.log.ErrorContext(r.Context(), "consent log consistency proof failed", "err", err, "first", first, "second", second)
		writeError(w, http.StatusInternalServerError, codeInternal, "the proof could not be made; try again")
		return
	}
	// A proof between two sizes never changes.
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	writeJSON(w, http.StatusOK, struct {
		Hashes [][]byte `json:"hashes"`
	}{Hashes: proof})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err) // the client went away
	}
}

// Error codes, the same stable codes the GraphQL API puts in
// extensions.code.
const (
	codeBadInput = "BAD_USER_INPUT"
	codeInternal = "INTERNAL"
)

// writeError answers in the shape of the API's other errors:
// {"errors":[{"message": …, "extensions": {"code": …}}]}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]any{"errors": []map[string]any{{"message": msg, "extensions": map[string]string{"code": code}}}})
}
