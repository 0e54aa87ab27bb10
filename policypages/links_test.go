package policypages

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filtermail/config"
)

func TestLinkLanguage(t *testing.T) {
	pages := map[string]string{"index.html": "index", "info.html": "info", "privacy.html": "privacy"}
	ru, _ := config.LookupLanguage("RU")
	tests := []struct{ in, want string }{
		{`<a href="info.html">`, `<a href="info.ru.html">`},
		{`<a href="/info.html">`, `<a href="/info.ru.html">`},
		{`<a href="./privacy.html?x=1#rights">`, `<a href="./privacy.ru.html?x=1#rights">`},
		{`<a href="../index.html">`, `<a href="../index.ru.html">`},
		{`<a href="/">`, `<a href="/index.ru.html">`},
		{`<a href="./">`, `<a href="./index.ru.html">`},
		{`<a href=".">`, `<a href="./index.ru.html">`},
		{`<a href='info.html'>`, `<a href='info.ru.html'>`},
		{`<a href=info.html>`, `<a href=info.ru.html>`},
		{`<A HREF = "info.html" class=x>`, `<A HREF = "info.ru.html" class=x>`},
		{`<a title="a > b" href="info.html">`, `<a title="a > b" href="info.ru.html">`},
		{`<a title=" href=info.html" href="x.css">`, `<a title=" href=info.html" href="x.css">`},
		{"<a\nclass=\"domain\"\nhref=\"index.html\">", "<a\nclass=\"domain\"\nhref=\"index.ru.html\">"},
		{`<a href="info.html" download>`, `<a href="info.ru.html" download>`},
		// Left alone: the page itself, other sites, assets, other pages.
		{`<a href="">`, `<a href="">`},
		{`<a href="#top">`, `<a href="#top">`},
		{`<a href="?x">`, `<a href="?x">`},
		{`<a href="https://x.example/info.html">`, `<a href="https://x.example/info.html">`},
		{`<a href="//x.example/info.html">`, `<a href="//x.example/info.html">`},
		{`<a href="mailto:info.html">`, `<a href="mailto:info.html">`},
		{`<a href="DCACCOUNT:https://x.example/new">`, `<a href="DCACCOUNT:https://x.example/new">`},
		{`<a href="main.css">`, `<a href="main.css">`},
		{`<a href="info.de.html">`, `<a href="info.de.html">`},
		{`<a href="other.html">`, `<a href="other.html">`},
		{`<a href="info.html/">`, `<a href="info.html/">`},
		{`<a href="sub/info.html">`, `<a href="sub/info.html">`},
		{`<link rel="next" href="info.html">`, `<link rel="next" href="info.html">`},
		{`<abbr href="info.html">`, `<abbr href="info.html">`},
		{`<p>href="info.html"</p>`, `<p>href="info.html"</p>`},
	}
	for _, tt := range tests {
		if got := linkLanguage(tt.in, pages, ru); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := linkLanguage(`<a href="/">`, map[string]string{"info.html": "info"}, ru); got != `<a href="/">` {
		t.Errorf("without a home page: %s", got)
	}
}

func TestSetLang(t *testing.T) {
	ru, _ := config.LookupLanguage("RU")
	tests := []struct{ in, want string }{
		{"<!DOCTYPE html>\n<html>\n<head>", "<!DOCTYPE html>\n<html lang=\"ru\">\n<head>"},
		{`<HTML class="x">`, `<HTML lang="ru" class="x">`},
		{`<html lang="en">`, `<html lang="en">`},
		{`<html LANG=en>`, `<html LANG=en>`},
		{`<html data-x="lang=x">`, `<html lang="ru" data-x="lang=x">`},
		{`<p>no html element</p>`, `<p>no html element</p>`},
		{`<htmlx>`, `<htmlx>`},
	}
	for _, tt := range tests {
		if got := setLang(tt.in, ru); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.in, got, tt.want)
		}
	}
}

// pageLink finds the links in a page that lead to pages of the site.
var pageLink = regexp.MustCompile(`<a\s[^>]*href="((?:\./|/)?[a-z]+(?:\.[a-z]+)?\.html)[^"]*"[^>]*>`)

// checkLinksKeep checks that each link from the page served as name to a
// page of the site leads to the page in the language with the given tag,
// or the plain page if tag is "", except the language tabs.
func checkLinksKeep(t *testing.T, site *Site, name, tag string) {
	t.Helper()
	html := page(t, site, name)
	links := pageLink.FindAllStringSubmatch(html, -1)
	if len(links) < 3 {
		t.Errorf("%s: %d links to pages", name, len(links))
	}
	for _, m := range links {
		if strings.Contains(m[0], "hreflang=") {
			continue
		}
		parts := strings.Split(strings.TrimLeft(m[1], "./"), ".")
		if tag == "" && len(parts) != 2 || tag != "" && (len(parts) != 3 || parts[1] != tag) {
			t.Errorf("%s: link %s", name, m[0])
		}
		if site.File(strings.TrimLeft(m[1], "./")) == nil {
			t.Errorf("%s: link %s to a page that is not there", name, m[1])
		}
	}
}

// On each language's page, the links to the other pages lead to their
// pages in that language; the plain pages keep their links as written.
func TestLinksKeepLanguage(t *testing.T) {
	site := render(t, loadConfig(t, relayParams...))
	for _, stem := range []string{"index", "info", "privacy"} {
		checkLinksKeep(t, site, stem+".html", "")
		for _, tag := range []string{"en", "ru", "de"} {
			checkLinksKeep(t, site, stem+"."+tag+".html", tag)
		}
	}
	// The texts link the other pages too, not only the navigation.
	for name, want := range map[string]string{
		"index.ru.html":   `<a href="privacy.ru.html">странице о конфиденциальности</a>`,
		"info.de.html":    `<a href="privacy.de.html">Datenschutzseite</a>`,
		"index.en.html":   `<a href="info.en.html">info page</a>`,
		"index.html":      `<a href="info.html">info page</a>`,
		"privacy.ru.html": `<a href="mailto:privacy@relay.example.net">`,
	} {
		if !strings.Contains(page(t, site, name), want) {
			t.Errorf("%s lacks %s", name, want)
		}
	}
}

// An operator's layout in the relay's format links the pages plainly and
// has no lang on its html element; each language's page gets both right,
// and the assets stay where they are.
func TestWWWFolderLanguages(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = fixture.example", "www_folder = testdata/www", "languages = EN RU"))
	for _, tt := range []struct{ name, tag, lang string }{
		{"index.html", "", "en"},
		{"index.ru.html", "ru", "ru"},
		{"privacy.ru.html", "ru", "ru"},
		{"privacy.en.html", "en", "en"},
		{"info.ru.html", "ru", ""}, // no text from locales/: no language to give
	} {
		checkLinksKeep(t, site, tt.name, tt.tag)
		html := page(t, site, tt.name)
		if !strings.Contains(html, `<link rel="stylesheet" href="./main.css">`) {
			t.Errorf("%s: main.css link changed", tt.name)
		}
		want := "<html>"
		if tt.lang != "" {
			want = `<html lang="` + tt.lang + `">`
		}
		if !strings.Contains(html, want) {
			t.Errorf("%s: no %s", tt.name, want)
		}
	}
	if !strings.Contains(page(t, site, "index.ru.html"), `<nav id="menu"><a href="index.ru.html">home</a> <a href="info.ru.html">info</a>`) {
		t.Error("index.ru.html: the layout's links are not in Russian")
	}

	// A lang the layout sets stays.
	www := copyFixture(t)
	layout := filepath.Join(www, "src", layoutFile)
	b, _ := os.ReadFile(layout)
	os.WriteFile(layout, []byte(strings.Replace(string(b), "<html>", `<html lang="{{ lang }}-x">`, 1)), 0o644)
	site = render(t, loadConfig(t, "mail_domain = fixture.example", "www_folder = "+www, "languages = EN RU"))
	if !strings.Contains(page(t, site, "privacy.ru.html"), `<html lang="ru-x">`) {
		t.Error("the layout's lang was replaced")
	}
}

// Each language's text carries its language, right to left where the
// language is written so; a notice that stands in for a missing
// translation is marked as English.
func TestSectionLang(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = x.example", "languages = EN FA"))
	fa := page(t, site, "privacy.fa.html")
	for _, want := range []string{`<html lang="fa">`, `<section lang="fa" dir="rtl">`,
		`<p class="untranslated" lang="en">`, `hreflang="fa" lang="fa" aria-current="page">فارسی</a>`} {
		if !strings.Contains(fa, want) {
			t.Errorf("privacy.fa.html lacks %s", want)
		}
	}
	if en := page(t, site, "privacy.html"); !strings.Contains(en, `<section lang="en">`) {
		t.Error("privacy.html: no English section")
	}
}

// navLink finds the links in the navigation of a bundled page.
var navLink = regexp.MustCompile(`<a href="([a-z.]+)"( aria-current="page")?>([^<]+)</a>`)

// The links between the pages are in the page's language, and so is its
// title.
func TestNavigationTranslated(t *testing.T) {
	words := map[string][]string{
		"en": {"home", "info", "privacy"},
		"ru": {"главная", "информация", "конфиденциальность"},
		"de": {"Start", "Info", "Datenschutz"},
	}
	titles := map[string]string{
		"index.en.html": "Welcome to x.example", "info.ru.html": "О релее x.example",
		"privacy.de.html": "Datenschutzerklärung von x.example", "privacy.html": "Privacy policy of x.example",
	}
	stems := []string{"index", "info", "privacy"}
	check := func(site *Site, name, tag, lang string) {
		t.Helper()
		html := page(t, site, name)
		start, end := strings.Index(html, "<nav>"), strings.Index(html, "</nav>")
		if start < 0 || end < start {
			t.Fatalf("%s: no navigation", name)
		}
		links := navLink.FindAllStringSubmatch(html[start:end], -1)
		if len(links) != 3 {
			t.Fatalf("%s: navigation %q", name, html[start:end])
		}
		for i, m := range links {
			href := stems[i] + ".html"
			if tag != "" {
				href = stems[i] + "." + tag + ".html"
			}
			current := strings.HasPrefix(name, stems[i]+".")
			if m[1] != href || m[3] != words[lang][i] || (m[2] != "") != current {
				t.Errorf("%s: navigation link %q, want %s to %s, current %v", name, m[0], words[lang][i], href, current)
			}
		}
		if title, ok := titles[name]; ok && !strings.Contains(html, "<title>"+title+"</title>") {
			t.Errorf("%s: title is not %q", name, title)
		}
	}
	site := render(t, loadConfig(t, "mail_domain = x.example", "languages = EN RU DE"))
	for _, stem := range stems {
		check(site, stem+".html", "", "en")
		for tag := range words {
			check(site, stem+"."+tag+".html", tag, tag)
		}
	}
	site = render(t, loadConfig(t, "mail_domain = x.example", "languages = DE"))
	titles = map[string]string{"privacy.html": "Datenschutzerklärung von x.example"}
	for _, stem := range stems {
		check(site, stem+".html", "", "de")
	}
}

// An operator's layout may take text from locales/ too, at the
// placeholder; without any, the placeholder goes and a warning says so.
func TestWWWFolderLayoutText(t *testing.T) {
	www := copyFixture(t)
	src := filepath.Join(www, "src")
	layout := filepath.Join(src, layoutFile)
	b, _ := os.ReadFile(layout)
	os.WriteFile(layout, []byte(strings.Replace(string(b), `<nav id="menu">`, `<nav id="menu">%content placeholder%`, 1)), 0o644)
	cfg := loadConfig(t, "mail_domain = fixture.example", "www_folder = "+www, "languages = EN RU")

	site := render(t, cfg)
	if !strings.Contains(page(t, site, "info.ru.html"), `<nav id="menu"><a href="index.ru.html">home</a>`) {
		t.Error("info.ru.html: placeholder in the layout not left empty")
	}
	if !strings.Contains(page(t, site, "info.ru.html"), `<html lang="ru">`) {
		t.Error("info.ru.html: a layout with a placeholder is in no language")
	}
	if len(site.Warnings) != 2 || !strings.Contains(site.Warnings[0], "locales/EN/page-layout.html: ") ||
		!strings.HasSuffix(site.Warnings[1], "; %content placeholder% in page-layout.html is left empty") {
		t.Errorf("warnings %q", site.Warnings)
	}

	os.WriteFile(filepath.Join(src, "locales/EN/page-layout.html"), []byte(`<a href="/">{{ config.mail_domain }}</a> `), 0o644)
	os.WriteFile(filepath.Join(src, "locales/RU/page-layout.html"), []byte(`<a href="/">{{ config.mail_domain }} по-русски</a> `), 0o644)
	site = render(t, cfg)
	for name, want := range map[string]string{
		"privacy.html":    `<nav id="menu"><a href="/">fixture.example</a> <a href="index.html">home</a>`,
		"privacy.en.html": `<nav id="menu"><a href="/index.en.html">fixture.example</a> <a href="index.en.html">home</a>`,
		"info.ru.html":    `<nav id="menu"><a href="/index.ru.html">fixture.example по-русски</a> <a href="index.ru.html">home</a>`,
	} {
		if !strings.Contains(page(t, site, name), want) {
			t.Errorf("%s lacks %s", name, want)
		}
	}
	if len(site.Warnings) != 0 {
		t.Errorf("warnings %q", site.Warnings)
	}
}
