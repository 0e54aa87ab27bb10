package policypages

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyFixture copies testdata/www into a temporary folder, so that a test
// can add files and links to it.
func copyFixture(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "www")
	if err := os.CopyFS(dst, os.DirFS("testdata/www")); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestWWWFolder(t *testing.T) {
	www := copyFixture(t)
	outside := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(outside, []byte("secret"), 0o644)
	src := filepath.Join(www, "src")
	if err := os.Symlink(outside, filepath.Join(src, "secret.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("main.css", filepath.Join(src, "alias.css")); err != nil {
		t.Fatal(err)
	}
	site := render(t, loadConfig(t,
		"mail_domain = fixture.example",
		"www_folder = "+www,
		"languages = EN RU",
		"is_development_instance = True",
		"privacy_mail = team@fixture.example",
	))

	home := page(t, site, "index.html")
	for _, want := range []string{
		"<title>fixture.example home</title>",
		`<img class="banner" src="banner.png">`,
		"<h2>Fixture home</h2>", "Get an address on fixture.example here.",
		"Fixture relay for trials only",
	} {
		if !strings.Contains(home, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	homeRU := page(t, site, "index.ru.html")
	for _, want := range []string{
		"<title>fixture.example home</title>",
		`<img class="banner" src="banner.png">`,
		"<h2>Главная страница</h2>", "Адрес на fixture.example можно получить здесь.",
		"Fixture relay for trials only",
	} {
		if !strings.Contains(homeRU, want) {
			t.Errorf("index.ru.html lacks %q", want)
		}
	}
	if strings.Contains(home, "refresh") {
		t.Error("undefined config.webdev read as true")
	}
	info := page(t, site, "info.html")
	for _, want := range []string{
		"<title>fixture.example info</title>",
		"This is the fixture relay.",
		"Names have nine to nine letters,\npasswords at least nine.",
		"Mail is kept 20 days.",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("info.html lacks %q", want)
		}
	}
	if strings.Contains(info, "some other relay") || strings.Contains(info, "language-tabs") {
		t.Error("info.html: wrong branch of the if, or tabs without a placeholder")
	}
	privacy := languageTexts(t, site, "privacy.html")
	if !strings.Contains(privacy["EN"], "Write to team@fixture.example") || !strings.Contains(privacy["RU"], "присылайте на team@fixture.example") {
		t.Errorf("privacy tabs: %q", privacy)
	}
	for _, name := range []string{"index.html", "info.html", "privacy.html"} {
		if m := templateSyntax.FindString(page(t, site, name)); m != "" {
			t.Errorf("%s: template syntax %q left", name, m)
		}
	}

	if f := site.File("banner.png"); f == nil || f.ContentType != "image/png" {
		t.Errorf("banner.png: %+v", f)
	}
	if f := site.File("alias.css"); f == nil || !strings.Contains(string(f.Body), "serif") {
		t.Error("a link to a file inside the folder is not served")
	}
	for _, name := range []string{"secret.txt", ".hidden", "page-layout.html", "index.md", "locales", "locales/EN/index.md", "src/main.css"} {
		if site.File(name) != nil {
			t.Errorf("%s is served", name)
		}
	}
	if len(site.Warnings) != 1 || !strings.Contains(site.Warnings[0], "secret.txt") {
		t.Errorf("warnings %q, want one about secret.txt", site.Warnings)
	}
}

// The folder itself may hold the sources, without src/.
func TestWWWFolderWithoutSrc(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = fixture.example", "www_folder = testdata/www/src"))
	if !strings.Contains(page(t, site, "index.html"), "Fixture home") {
		t.Error("index.html not rendered from the folder")
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name, file, text string
		want             []string
	}{
		{"unclosed if", "src/info.md", "line one\n\n{% if config.mail_domain %}\nno end\n", []string{"src/info.md:4:", "endif"}},
		{"unknown filter", "src/locales/RU/index.md", "## x\n{{ config.mail_domain | nosuchfilter }}\n", []string{"src/locales/RU/index.md:2: filter 'nosuchfilter' not found"}},
		{"broken layout", "src/page-layout.html", "<html>\n{{ markdown_html \n</html>\n", []string{"src/page-layout.html:3:"}},
		{"no include", "src/info.md", "{% include \"/etc/passwd\" %}\n", []string{"src/info.md:", "/etc/passwd"}},
		{"no layout", "src/page-layout.html", "", []string{"src/page-layout.html: no such file"}},
	}
	for _, tt := range tests {
		www := copyFixture(t)
		path := filepath.Join(www, tt.file)
		var err error
		if tt.text == "" {
			err = os.Remove(path)
		} else {
			err = os.WriteFile(path, []byte(tt.text), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		site, err := Render(loadConfig(t, "mail_domain = x.example", "www_folder = "+www, "languages = EN RU"))
		if site != nil || err == nil {
			t.Errorf("%s: rendered", tt.name)
			continue
		}
		for _, want := range tt.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q lacks %q", tt.name, err, want)
			}
		}
		if strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%s: error %q spans lines", tt.name, err)
		}
	}

	_, err := Render(loadConfig(t, "mail_domain = x.example", "www_folder = /nonexistent/www"))
	if err == nil || !strings.Contains(err.Error(), "www_folder") {
		t.Errorf("missing www_folder: %v", err)
	}
}

// Like the relay, rendering goes on until the output stops changing, so a
// config value holding template syntax is rendered too.
func TestRenderUntilSettled(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = x.example", "privacy_mail = team@{{ config.mail_domain }}"))
	if !strings.Contains(page(t, site, "privacy.html"), "team@x.example") {
		t.Error("template syntax from a config value was not rendered")
	}

	www := copyFixture(t)
	os.WriteFile(filepath.Join(www, "src/info.md"), []byte("{{ '{{' }} config.privacy_mail }}\n"), 0o644)
	_, err := Render(loadConfig(t, "mail_domain = x.example", "www_folder = "+www, `privacy_mail = {{ "{{" }} config.privacy_mail }}`))
	if err == nil || !strings.Contains(err.Error(), "info.html: still changing") {
		t.Errorf("a page that never settles: %v", err)
	}
}

func TestWriteDir(t *testing.T) {
	site := render(t, loadConfig(t, "mail_domain = x.example", "languages = EN DE"))
	dir := filepath.Join(t.TempDir(), "html")
	if err := site.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(site.Files()) {
		t.Errorf("%d files written, the site has %d", len(entries), len(site.Files()))
	}
	for _, f := range site.Files() {
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil || !bytes.Equal(got, f.Body) {
			t.Errorf("%s: written %d bytes, %v", f.Name, len(got), err)
		}
	}
	// Writing again replaces the files.
	if err := site.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
}
