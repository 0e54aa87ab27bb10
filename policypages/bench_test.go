package policypages

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkRender is what start-up and SIGHUP pay: all bundled pages in
// three languages.
func BenchmarkRender(b *testing.B) {
	cfg := loadConfig(b, "mail_domain = x.example", "languages = EN RU DE")
	for b.Loop() {
		if _, err := Render(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServe compares serving a page from memory with the standard
// library's file server reading the same files written by WriteDir.
func BenchmarkServe(b *testing.B) {
	site, err := Render(loadConfig(b, "mail_domain = x.example", "languages = EN RU DE"))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := site.WriteDir(dir); err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name string
		h    http.Handler
	}{
		{"memory", NewHandler(site)},
		{"fileserver", http.FileServer(http.Dir(dir))},
	} {
		b.Run(bm.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/privacy.html", nil)
			for b.Loop() {
				rec := httptest.NewRecorder()
				bm.h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
