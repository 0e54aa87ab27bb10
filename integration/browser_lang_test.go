package integration

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"filtermail/config"
	"filtermail/policypages"
)

// servePages renders the pages for a chatmail.ini with the given [params]
// lines and serves them as filtermail does, from this process.
func servePages(t *testing.T, params ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chatmail.ini")
	ini := "[params]\n" + strings.Join(params, "\n") + "\n"
	if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	site, err := policypages.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(policypages.NewHandler(site))
	t.Cleanup(srv.Close)
	return srv.URL
}

// follow clicks the element sel finds, a link, and waits until the page
// it leads to has loaded. It returns the new page's path.
func follow(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	before, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`))
	if err != nil {
		t.Fatal(err)
	}
	there, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, sel)))
	if err != nil || !there {
		t.Fatalf("%s: no %s, %v", before, sel, err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		t.Fatalf("clicking %s: %v", sel, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		// While the next page loads, evaluating may fail; try again.
		state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState + " " + location.pathname`))
		if path, ok := strings.CutPrefix(state, "complete "); err == nil && ok && path != before {
			return path
		}
	}
	t.Fatalf("clicking %s: no other page loaded", sel)
	return ""
}

// shown tells which of the languages' texts a page shows.
func shown(t *testing.T, ctx context.Context) []string {
	t.Helper()
	var langs []string
	for _, lang := range []string{"en", "ru", "de"} {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(
			`[...document.querySelectorAll('section[lang="%s"]')].some(s => s.getClientRects().length > 0 && s.offsetHeight > 0)`, lang)))
		if err != nil {
			t.Fatal(err)
		}
		if v {
			langs = append(langs, lang)
		}
	}
	return langs
}

// A visitor who chooses Russian on the privacy page and follows the link
// to the info page reads the info page in Russian, navigation and all,
// and keeps reading Russian back on the privacy page; no script runs.
func TestBrowserLanguageAcrossPages(t *testing.T) {
	base := servePages(t,
		"mail_domain = chat.example.org",
		"languages = EN RU DE",
		"privacy_mail = privacy@chat.example.org",
	)
	ctx, con := browser(t)
	text := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pageLang := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.lang`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	english := []string{"Privacy policy of", "About chat.example.org", "home\n", "privacy\n"}
	german := []string{"Datenschutzerklärung", "Über chat.example.org", "Datenschutz\n", "Start\n"}
	lacks := func(where string, texts ...string) {
		t.Helper()
		visible := text()
		for _, s := range texts {
			if strings.Contains(visible, s) {
				t.Errorf("%s: %q is visible", where, s)
			}
		}
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/privacy.html")); err != nil {
		t.Fatal(err)
	}
	if got := shown(t, ctx); fmt.Sprint(got) != "[en]" || pageLang() != "en" {
		t.Errorf("privacy.html shows %v, lang %q; want English", got, pageLang())
	}

	// Choose Russian.
	if path := follow(t, ctx, `.language-choice a[hreflang="ru"]`); path != "/privacy.ru.html" {
		t.Errorf("the Russian tab leads to %s", path)
	}
	if got := shown(t, ctx); fmt.Sprint(got) != "[ru]" || pageLang() != "ru" {
		t.Errorf("after choosing Russian: shows %v, lang %q", got, pageLang())
	}

	// Follow the navigation to the info page.
	if path := follow(t, ctx, `header nav a[href^="info"]`); path != "/info.ru.html" {
		t.Errorf("the navigation leads to %s", path)
	}
	if got := shown(t, ctx); fmt.Sprint(got) != "[ru]" || pageLang() != "ru" {
		t.Errorf("info page: shows %v, lang %q; want Russian", got, pageLang())
	}
	visible := text()
	for _, want := range []string{"О релее chat.example.org", "Ограничения", "главная", "информация", "конфиденциальность"} {
		if !strings.Contains(visible, want) {
			t.Errorf("info page: %q not visible", want)
		}
	}
	lacks("info page", append(english, german...)...)
	current, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('.language-choice a[aria-current="page"]').hreflang`))
	if err != nil || current != "ru" {
		t.Errorf("info page: current tab %q, %v", current, err)
	}
	if title, err := chromedp.Run(ctx, chromedp.Title()); err != nil || title != "О релее chat.example.org" {
		t.Errorf("info page: title %q, %v", title, err)
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(outputDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outputDir, "info-ru.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}

	// And back by the link in the text.
	if path := follow(t, ctx, `section[lang="ru"] a[href^="privacy"]`); path != "/privacy.ru.html" {
		t.Errorf("the info page's text links to %s", path)
	}
	if got := shown(t, ctx); fmt.Sprint(got) != "[ru]" {
		t.Errorf("privacy page again: shows %v", got)
	}
	lacks("privacy page again", append(english, german...)...)

	// A plain link shows the first language.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/info.html")); err != nil {
		t.Fatal(err)
	}
	if got := shown(t, ctx); fmt.Sprint(got) != "[en]" || pageLang() != "en" {
		t.Errorf("info.html shows %v, lang %q; want English", got, pageLang())
	}

	wantCleanConsole(t, con)
}
