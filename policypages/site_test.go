package policypages

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"filtermail/config"
)

// loadConfig reads a chatmail.ini made of the given [params] lines.
func loadConfig(t testing.TB, lines ...string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chatmail.ini")
	ini := "[params]\n" + strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func render(t *testing.T, cfg *config.Config) *Site {
	t.Helper()
	site, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return site
}

func page(t *testing.T, site *Site, name string) string {
	t.Helper()
	f := site.File(name)
	if f == nil {
		t.Fatalf("no %s in the site", name)
	}
	return string(f.Body)
}

// relayParams is a relay's config with a distinct value for everything the
// pages show.
var relayParams = []string{
	"mail_domain = relay.example.net",
	"max_user_send_per_minute = 37",
	"max_user_send_burst_size = 13",
	"max_message_size = 20971520",
	"max_mailbox_size = 321M",
	"delete_mails_after = 23",
	"delete_large_after = 5",
	"delete_inactive_users_after = 111",
	"privacy_postal =",
	"    Relay Operators e.V.",
	"    Example Street 5, 12345 Sample Town",
	"privacy_mail = privacy@relay.example.net",
	"privacy_pdo = Dana Officer, Data Lane 7",
	"privacy_supervisor = Commissioner for Examples",
	"languages = EN RU DE",
}

// templateSyntax finds what a template engine would have replaced.
var templateSyntax = regexp.MustCompile(`\{\{|\}\}|\{%|%\}|\{#|#\}|%content placeholder%`)

// sectionText finds a page's text in one language.
var sectionText = regexp.MustCompile(`(?s)<section lang="([a-z]+)"(?: dir="rtl")?>\n(.*?)</section>`)

// languageTexts returns the text of the page served as name in each
// language the site has a page for, <stem>.<lang>.html, by language code.
func languageTexts(t *testing.T, site *Site, name string) map[string]string {
	t.Helper()
	stem := strings.TrimSuffix(name, ".html")
	texts := map[string]string{}
	for _, f := range site.Files() {
		tag, ok := strings.CutPrefix(f.Name, stem+".")
		tag, ok2 := strings.CutSuffix(tag, ".html")
		if !ok || !ok2 || strings.Contains(tag, ".") {
			continue
		}
		for _, m := range sectionText.FindAllStringSubmatch(string(f.Body), -1) {
			if m[1] != tag {
				t.Errorf("%s: a section in %q", f.Name, m[1])
			}
			texts[strings.ToUpper(tag)] += m[2]
		}
	}
	return texts
}

func TestBundledPagesShowConfig(t *testing.T) {
	site := render(t, loadConfig(t, relayParams...))
	if len(site.Warnings) > 0 {
		t.Errorf("warnings: %q", site.Warnings)
	}
	for _, name := range []string{"index.html", "info.html", "privacy.html"} {
		html := page(t, site, name)
		if m := templateSyntax.FindString(html); m != "" {
			t.Errorf("%s: template syntax %q left", name, m)
		}
		if got := site.File(name).ContentType; got != "text/html; charset=utf-8" {
			t.Errorf("%s: content type %q", name, got)
		}
		tabs := languageTexts(t, site, name)
		if len(tabs) != 3 {
			t.Fatalf("%s: %d language sections, want 3", name, len(tabs))
		}
		for lang, text := range tabs {
			if !strings.Contains(text, "relay.example.net") {
				t.Errorf("%s %s: mail domain missing", name, lang)
			}
		}
	}

	privacy := languageTexts(t, site, "privacy.html")
	legalBasis := map[string][]string{
		"EN": {"Art. 6(1)(b) GDPR", "Art. 6(1)(f) GDPR"},
		"RU": {"ст. 6(1)(b) GDPR", "ст. 6(1)(f) GDPR"},
		"DE": {"Art. 6 Abs. 1 lit. b DSGVO", "Art. 6 Abs. 1 lit. f DSGVO"},
	}
	for lang, text := range privacy {
		for _, want := range append([]string{
			"23",      // delete_mails_after
			"111",     // delete_inactive_users_after
			"37",      // max_user_send_per_minute
			"321 MiB", // max_mailbox_size
			"20 MiB",  // max_message_size
			"Relay Operators e.V.<br>\nExample Street 5, 12345 Sample Town",
			"privacy@relay.example.net",
			"Dana Officer, Data Lane 7",
			"Commissioner for Examples",
		}, legalBasis[lang]...) {
			if !strings.Contains(text, want) {
				t.Errorf("privacy %s: %q missing", lang, want)
			}
		}
	}
	en := strings.Join(strings.Fields(privacy["EN"]), " ")
	for _, want := range []string{
		"Messages are deleted from the server after 23 days at the latest.",
		"IP addresses are not stored, and they are never linked to mail addresses.",
		"It refuses to send mail that is not encrypted.",
		"An address that is not used for 111 days is deleted",
	} {
		if !strings.Contains(en, want) {
			t.Errorf("privacy EN: %q missing", want)
		}
	}
	if s, l := strings.Index(en, "Summary"), strings.Index(en, "Legal details"); s < 0 || l < s {
		t.Errorf("privacy EN: summary at %d, legal details at %d; want the summary first", s, l)
	}

	for lang, text := range languageTexts(t, site, "info.html") {
		for _, want := range []string{"37", "13", "20 MiB", "321 MiB", "23", "5", "111", "privacy@relay.example.net"} {
			if !strings.Contains(text, want) {
				t.Errorf("info %s: %q missing", lang, want)
			}
		}
	}
}

// tabLink finds the links of the language choice.
var tabLink = regexp.MustCompile(`<a href="([a-z.]+)" hreflang="([a-z]+)" lang="([a-z]+)"( aria-current="page")?>`)

// Each language has its own page, with the choice of languages in the
// configured order and the page's own language marked; the plain page is
// the first language's.
func TestTabsInConfiguredOrder(t *testing.T) {
	for _, langs := range [][]string{{"EN", "RU", "DE"}, {"DE", "EN", "RU"}, {"RU", "DE"}} {
		site := render(t, loadConfig(t, "mail_domain = x.example", "languages = "+strings.Join(langs, " ")))
		for i, lang := range append([]string{""}, langs...) {
			name := "privacy.html"
			if lang != "" {
				name = "privacy." + strings.ToLower(lang) + ".html"
			} else {
				lang = langs[0]
			}
			html := page(t, site, name)
			var got []string
			for _, m := range tabLink.FindAllStringSubmatch(html, -1) {
				code := strings.ToUpper(m[2])
				got = append(got, code)
				if m[1] != "privacy."+m[2]+".html" || m[3] != m[2] {
					t.Errorf("%v %s: tab %q", langs, name, m[0])
				}
				if current := m[4] != ""; current != (code == lang) {
					t.Errorf("%v %s: tab %s marked current: %v", langs, name, code, current)
				}
			}
			if strings.Join(got, " ") != strings.Join(langs, " ") {
				t.Errorf("languages %v, %s: tabs %v", langs, name, got)
			}
			if want := `<html lang="` + strings.ToLower(lang) + `">`; !strings.Contains(html, want) {
				t.Errorf("languages %v, %s: no %s", langs, name, want)
			}
			if i > 0 && site.File("index."+strings.ToLower(lang)+".html") == nil {
				t.Errorf("languages %v: no home page in %s", langs, lang)
			}
			if !strings.Contains(html, `<link rel="stylesheet" href="`+tabsCSS+`">`) {
				t.Errorf("languages %v, %s: tabs stylesheet not linked", langs, name)
			}
		}
		if site.File(tabsCSS) == nil {
			t.Errorf("languages %v: no %s", langs, tabsCSS)
		}
	}
}

func TestOneLanguageShowsNoTabs(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = x.example", "languages = DE"))
	html := page(t, site, "privacy.html")
	if strings.Contains(html, "language-") || site.File(tabsCSS) != nil {
		t.Error("one language shows tabs")
	}
	if site.File("privacy.de.html") != nil || len(site.Files()) != 6 {
		t.Errorf("one language: %d files", len(site.Files()))
	}
	if !strings.Contains(html, `<html lang="de">`) || !strings.Contains(html, "Datenschutzerklärung von x.example") {
		t.Error("German page missing")
	}
}

// oddText finds what an empty value leaves behind in a page: an empty
// element or link, a sentence that ends on a colon with nothing after it,
// a full stop after nothing ("Contact: ."), a heading over nothing.
var oddText = []*regexp.Regexp{
	regexp.MustCompile(`<(address|p|li|a)\b[^>]*>\s*</(address|p|li|a)>`),
	regexp.MustCompile(`mailto:\s*"`),
	regexp.MustCompile(`:\s*</p>\s*(<(p|h\d|ul|ol)\b|</|$)`),
	regexp.MustCompile(`:\s*(</(a|li|td|section)>|$)`),
	regexp.MustCompile(`(^|[\s:,])[.,](\s|<|$)`),
	regexp.MustCompile(`</h\d>\s*$`),
}

// headingOverNothing finds a heading followed straight by one of the same
// or a higher level.
var headingOverNothing = regexp.MustCompile(`<h(\d)>[^<]*</h\d>\s*<h(\d)>`)

// Every combination of empty contact values reads naturally, in every
// language, and shows each value that is given.
func TestEmptyContacts(t *testing.T) {
	values := map[string]string{
		"privacy_postal":     "Relay Operators e.V., Example Street 5",
		"privacy_mail":       "privacy@x.example",
		"privacy_pdo":        "Dana Officer, Data Lane 7",
		"privacy_supervisor": "Commissioner for Examples",
	}
	keys := []string{"privacy_postal", "privacy_mail", "privacy_pdo", "privacy_supervisor"}
	noContact := map[string]string{
		"EN": "has not published a postal address or an e-mail address",
		"RU": "Ни почтового адреса, ни адреса эл. почты",
		"DE": "weder eine Postanschrift noch eine E-Mail-Adresse",
	}
	for set := range 1 << len(keys) {
		lines := []string{"mail_domain = x.example", "languages = EN RU DE"}
		var given []string
		for i, key := range keys {
			if set&(1<<i) != 0 {
				lines = append(lines, key+" = "+values[key])
				given = append(given, key)
			} else {
				lines = append(lines, key+" =")
			}
		}
		site := render(t, loadConfig(t, lines...))
		for _, name := range []string{"privacy.html", "info.html"} {
			texts := languageTexts(t, site, name)
			if len(texts) != 3 {
				t.Fatalf("%s: %d languages", name, len(texts))
			}
			for lang, text := range texts {
				where := fmt.Sprintf("%s/%s with %v given", name, lang, given)
				for _, re := range oddText {
					if m := re.FindString(text); m != "" {
						t.Errorf("%s: %q", where, m)
					}
				}
				for _, m := range headingOverNothing.FindAllStringSubmatch(text, -1) {
					if m[2] <= m[1] {
						t.Errorf("%s: heading over nothing: %q", where, m[0])
					}
				}
				for _, key := range keys {
					if name == "info.html" && (key == "privacy_pdo" || key == "privacy_supervisor") {
						continue
					}
					if shown := strings.Contains(text, values[key]); shown != slices.Contains(given, key) {
						t.Errorf("%s: %s shown: %v", where, key, shown)
					}
				}
				if strings.Contains(text, "mailto:") != slices.Contains(given, "privacy_mail") {
					t.Errorf("%s: a mail link without privacy_mail, or none with it", where)
				}
				none := !slices.Contains(given, "privacy_postal") && !slices.Contains(given, "privacy_mail")
				if said := strings.Contains(strings.Join(strings.Fields(text), " "), noContact[lang]); said != none {
					t.Errorf("%s: says that no contact is published: %v", where, said)
				}
			}
		}
	}
}

func TestMissingTranslation(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = x.example", "languages = EN FR"))
	tabs := languageTexts(t, site, "index.html")
	if !strings.Contains(tabs["FR"], "This page is not available in Français yet.") {
		t.Errorf("FR tab: %q", tabs["FR"])
	}
	if !strings.Contains(tabs["EN"], "Welcome to x.example") {
		t.Errorf("EN tab: %q", tabs["EN"])
	}
	var want []string
	for _, w := range site.Warnings {
		if strings.Contains(w, "bundled/locales/FR/") {
			want = append(want, w)
		}
	}
	if len(want) != 4 || len(site.Warnings) != 4 {
		t.Errorf("warnings %q, want one for each page's FR file and one for the layout's", site.Warnings)
	}
	// The navigation falls back to English, marked as English.
	for _, langs := range []string{"EN FR", "FR", "FR DE"} {
		site := render(t, loadConfig(t, "mail_domain = x.example", "languages = "+langs))
		name := "info.fr.html"
		if langs == "FR" {
			name = "info.html"
		}
		nav := "<nav>\n<span lang=\"en\">"
		if langs == "FR DE" {
			nav = "<nav>\n<span lang=\"de\">"
		}
		if html := page(t, site, name); !strings.Contains(html, nav) || !strings.Contains(html, `<html lang="fr">`) {
			t.Errorf("languages %s: %s has no %q", langs, name, nav)
		}
	}
}

func TestAllLanguages(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = x.example", "languages = ALL"))
	tabs := languageTexts(t, site, "info.html")
	if len(tabs) != 3 || tabs["EN"] == "" || tabs["RU"] == "" || tabs["DE"] == "" {
		t.Errorf("ALL: tabs %v", tabs)
	}
}

func TestDevelopmentNotice(t *testing.T) {
	for _, v := range []string{"True", "true", "false", ""} {
		site := render(t, loadConfig(t, "mail_domain = x.example", "is_development_instance = "+v))
		shown := strings.Contains(page(t, site, "index.html"), "test installation")
		if want := strings.EqualFold(v, "true"); shown != want {
			t.Errorf("is_development_instance = %q: notice shown %v", v, shown)
		}
	}
}

// The QR image itself is decoded by the black-box tests, over HTTP.
func TestQRCodeLinks(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = qr.example.org"))
	f := site.File("qr-chatmail-invite-qr.example.org.png")
	if f == nil || f.ContentType != "image/png" || !bytes.HasPrefix(f.Body, []byte("\x89PNG")) {
		t.Fatalf("QR image %+v", f)
	}
	home := page(t, site, "index.html")
	for _, want := range []string{`src="qr-chatmail-invite-qr.example.org.png"`, `href="DCACCOUNT:https://qr.example.org/new"`} {
		if !strings.Contains(home, want) {
			t.Errorf("home page lacks %s", want)
		}
	}
}
