package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/consentgraph/consentgraph/internal/auth"
	"github.com/consentgraph/consentgraph/internal/export"
)

// newExport registers the sections the core owns; other domains add theirs.
func (a *App) newExport() *export.Service {
	e := export.New(a.Signing)
	e.Register("account", func(ctx context.Context, userID string) (any, error) {
		u, err := a.Accounts.Get(ctx, userID)
		if err != nil {
			return nil, err
		}
		return map[string]any{
			"id": u.ID, "username": u.Username, "role": u.Role, "createdAt": u.CreatedAt,
			"email": u.Email, "emailVerified": u.EmailVerified,
			"profile": map[string]any{
				"birthYear": u.Profile.BirthYear, "country": u.Profile.Country,
				"gender": u.Profile.Gender, "language": u.Profile.Language,
			},
		}, nil
	})
	e.Register("sessions", func(ctx context.Context, userID string) (any, error) {
		ss, err := a.Accounts.Sessions(ctx, userID)
		if err != nil {
			return nil, err
		}
		out := make([]map[string]time.Time, 0, len(ss))
		for _, s := range ss {
			out = append(out, map[string]time.Time{"createdAt": s.CreatedAt, "expiresAt": s.ExpiresAt})
		}
		return out, nil
	})
	return e
}

// serveExport is GET /export: the signed export as a file download for a
// signed-in browser (the session cookie authenticates it).
func (a *App) serveExport(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	if !p.IsUser() {
		writeGraphQLError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "sign in first")
		return
	}
	err := a.Audit.Append(r.Context(), p.Actor(), "export", p.UserID, "GET /export")
	var e *export.Export
	if err == nil {
		e, err = a.Export.Build(r.Context(), p.UserID)
	}
	if err != nil {
		a.log.ErrorContext(r.Context(), "export failed", "err", err, "request_id", RequestID(r.Context()))
		writeGraphQLError(w, http.StatusInternalServerError, "INTERNAL", "export failed; quote request id "+RequestID(r.Context()))
		return
	}
	name := "consentgraph-export-" + time.Now().UTC().Format("2006-01-02") + ".json"
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(exportFile(e))
}

// exportHowToVerify is written into every export file, so whoever holds one
// can check it without this README.
const exportHowToVerify = "signature is a detached JWS (RFC 7515 appendix F, EdDSA) over the bytes of document " +
	"exactly as they stand in this file: from the { after \"document\": up to and including the } before the " +
	"file's last line. The public keys are at /.well-known/jwks.json."

// exportFile lays out the download: one JSON object whose document member
// is the signed document itself (an object, not a string), written byte
// for byte as signed and placed last, so a verifier can cut it out of the
// file without re-encoding anything.
func exportFile(e *export.Export) []byte {
	sig, _ := json.Marshal(e.Signature)
	how, _ := json.Marshal(exportHowToVerify)
	var b bytes.Buffer
	b.WriteString("{\n  \"signature\": ")
	b.Write(sig)
	b.WriteString(",\n  \"verify\": ")
	b.Write(how)
	b.WriteString(",\n  \"document\": ")
	b.Write(e.Document)
	b.WriteString("\n}\n")
	return b.Bytes()
}
