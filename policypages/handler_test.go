package policypages

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestHandlerSwap(t *testing.T) {
	h := NewHandler(render(t, loadConfig(t, "mail_domain = one.example")))
	get := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		return rec.Body.String()
	}
	if !strings.Contains(get(), "Welcome to one.example") {
		t.Fatal("first site not served")
	}
	h.Swap(render(t, loadConfig(t, "mail_domain = two.example")))
	if !strings.Contains(get(), "Welcome to two.example") {
		t.Error("swapped site not served")
	}
}

// FuzzHandlerPath checks that no request path but those of the site's
// files is ever answered with content.
func FuzzHandlerPath(f *testing.F) {
	for _, p := range []string{"/", "/index.html", "/../etc/passwd", "/%2e%2e/x", "//index.html", "/main.css/", "/locales/EN/index.md"} {
		f.Add(p)
	}
	site, err := Render(loadConfig(f, "mail_domain = x.example", "languages = EN RU DE"))
	if err != nil {
		f.Fatal(err)
	}
	h := NewHandler(site)
	f.Fuzz(func(t *testing.T, path string) {
		u, err := url.Parse(path)
		if err != nil || u.Path == "" {
			return
		}
		req := &http.Request{Method: "GET", URL: &url.URL{Path: u.Path}, Header: http.Header{}}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		name := strings.TrimPrefix(u.Path, "/")
		if name == "" {
			name = "index.html"
		}
		served := rec.Code == http.StatusOK
		if served != (strings.HasPrefix(u.Path, "/") && site.File(name) != nil) {
			t.Errorf("path %q: status %d", u.Path, rec.Code)
		}
	})
}
