package httpsec

import (
	"net/http"
	"strings"
)

// PageCSPWithImages is PageCSP that also allows images from origin (the
// operator's logo host), and from nowhere else.
func PageCSPWithImages(origin string) string {
	if origin == "" {
		return PageCSP
	}
	return strings.Replace(PageCSP, "img-src 'self' data:;", "img-src 'self' data: "+origin+";", 1)
}

// AllowPageImages lets the pages served by next load images from origin:
// a response that goes out with PageCSP gets PageCSPWithImages instead.
// Other responses keep their policy. The page handlers set their policy
// themselves (SetPageHeaders), so the swap happens as the header is sent.
func AllowPageImages(origin string, next http.Handler) http.Handler {
	if origin == "" {
		return next
	}
	csp := PageCSPWithImages(origin)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&imageCSPWriter{ResponseWriter: w, csp: csp}, r)
	})
}

type imageCSPWriter struct {
	http.ResponseWriter
	csp  string
	sent bool
}

func (w *imageCSPWriter) swap() {
	if w.sent {
		return
	}
	w.sent = true
	if h := w.Header(); h.Get("Content-Security-Policy") == PageCSP {
		h.Set("Content-Security-Policy", w.csp)
	}
}

func (w *imageCSPWriter) WriteHeader(code int) {
	w.swap()
	w.ResponseWriter.WriteHeader(code)
}

func (w *imageCSPWriter) Write(b []byte) (int, error) {
	w.swap()
	return w.ResponseWriter.Write(b)
}

// Flush keeps streaming answers streaming through the wrapper.
func (w *imageCSPWriter) Flush() {
	w.swap()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *imageCSPWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
