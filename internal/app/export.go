package app

import (
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
	w.Header().Set("Content-Disposition", `attachment; filename="consentgraph-export.json"`)
	w.Header().Set("Cache-Control", "no-store")
	body, _ := json.MarshalIndent(map[string]string{"document": string(e.Document), "signature": e.Signature}, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}
