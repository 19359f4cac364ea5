package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"time"
)

// WidgetPath is where the consent widget for the operator's own site is
// served (README "Consent widget").
const WidgetPath = "/embed/consent.js"

// WidgetRoutes registers the consent widget script. Sites include it with
// a classic <script src> tag, which needs no CORS; what the widget then
// reads and changes goes through /graphql, whose CORS allow-list
// (--cors-origins) decides which sites may use it at all. The script holds
// no personal data, so any page may load it.
func WidgetRoutes(mux *http.ServeMux) {
	body, err := fs.ReadFile(Static(), "embed/consent.js")
	if err != nil {
		panic(err) // embedded at build time; a missing file is a broken build
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	mux.HandleFunc("GET "+WidgetPath, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		// The URL is fixed (sites cannot be asked to change their tag on
		// every release), so caches keep it briefly and then revalidate
		// with the ETag, which is cheap.
		h.Set("Cache-Control", "public, max-age=300, must-revalidate")
		h.Set("ETag", etag)
		// Loaded by other sites' pages: a host that isolates itself
		// (Cross-Origin-Embedder-Policy: require-corp) may still use it.
		h.Set("Cross-Origin-Resource-Policy", "cross-origin")
		// ServeContent answers If-None-Match with 304 and handles HEAD and
		// ranges; the zero modification time leaves Last-Modified out.
		http.ServeContent(w, r, "consent.js", time.Time{}, bytes.NewReader(body))
	})
}
