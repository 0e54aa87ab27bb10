package policypages

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// ContentSecurityPolicy is sent with every response. The pages need
// nothing inline but style attributes, which relay-format pages use;
// scripts, if an operator's pages have any, come from the site itself.
const ContentSecurityPolicy = "default-src 'none'; img-src 'self' data:; style-src 'self'; " +
	"style-src-attr 'unsafe-inline'; script-src 'self'; font-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves a Site from memory. Only the site's files are ever
// served: the request path is looked up, never opened.
type Handler struct {
	site atomic.Pointer[Site]
}

// NewHandler returns a handler serving site.
func NewHandler(site *Site) *Handler {
	h := &Handler{}
	h.site.Store(site)
	return h
}

// Swap makes the handler serve site from now on.
func (h *Handler) Swap(site *Site) { h.site.Store(site) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, "/")
	if name == "" {
		name = "index.html"
	}
	f := h.site.Load().File(name)
	if !ok || f == nil {
		http.NotFound(w, r)
		return
	}
	hdr.Set("Content-Type", f.ContentType)
	hdr.Set("ETag", f.ETag)
	if strings.HasPrefix(f.ContentType, "text/html") {
		// Pages change on reload; always ask whether this is still the one.
		hdr.Set("Cache-Control", "no-cache")
	} else {
		hdr.Set("Cache-Control", "public, max-age=3600")
	}
	http.ServeContent(w, r, f.Name, time.Time{}, bytes.NewReader(f.Body))
}
