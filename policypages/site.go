// Package policypages renders the relay's public pages (home, info,
// privacy) from templates embedded in the binary or from the operator's
// www_folder, and serves them from memory.
package policypages

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html"
	"maps"
	"mime"
	"path"
	"regexp"
	"slices"
	"strings"

	"filtermail/config"
)

// File is one file of the site, ready to serve.
type File struct {
	Name        string // as served, without the leading slash: "info.html"
	ContentType string
	Body        []byte
	ETag        string // strong, quoted: a hash of Body
}

// Site is a rendered set of pages with their assets.
type Site struct {
	files map[string]*File

	// Warnings are problems that did not stop the rendering, such as a
	// language without a translation; each deserves a log line.
	Warnings []string
}

// File returns the file served under name (without a leading slash), or
// nil.
func (s *Site) File(name string) *File { return s.files[name] }

// Files returns every file of the site, by name.
func (s *Site) Files() []*File {
	files := make([]*File, 0, len(s.files))
	for _, name := range slices.Sorted(maps.Keys(s.files)) {
		files = append(files, s.files[name])
	}
	return files
}

// qrName is the name of the invite QR image for a mail domain, the name
// relay pages link to.
func qrName(mailDomain string) string {
	return "qr-chatmail-invite-" + mailDomain + ".png"
}

// Render renders the pages for cfg: from cfg.WWWFolder if it is set,
// else the bundled ones. An error names the file, and the line where
// there is one; no partial site is returned.
func Render(cfg *config.Config) (*Site, error) {
	src := bundledSource()
	if cfg.WWWFolder != "" {
		var err error
		if src, err = folderSource(cfg.WWWFolder); err != nil {
			return nil, err
		}
		defer src.close()
	}
	r := &renderer{
		cfg:     cfg,
		src:     src,
		engines: map[string]*jinja{},
		md:      newMarkdown(),
		site:    &Site{files: map[string]*File{}},

		layoutWarned: map[string]bool{},
	}
	if err := r.render(); err != nil {
		return nil, err
	}
	return r.site, nil
}

type renderer struct {
	cfg     *config.Config
	src     source
	engines map[string]*jinja // by language code
	md      markdown
	site    *Site

	langs   []config.Language
	locales map[string]string // language code to folder under locales/
	pages   map[string]string // served name of each page to its stem
	tabbed  bool              // some page shows language tabs

	layoutWarned map[string]bool // languages warned about for lacking a layout text
}

func (r *renderer) warn(msg string) { r.site.Warnings = append(r.site.Warnings, msg) }

// jinja returns the template engine for pages in the language l.
func (r *renderer) jinja(l config.Language) *jinja {
	j := r.engines[l.Code]
	if j == nil {
		j = newJinja(l)
		r.engines[l.Code] = j
	}
	return j
}

func (r *renderer) render() error {
	pages, assets, err := r.src.entries(r.warn)
	if err != nil {
		return err
	}
	if len(pages) == 0 {
		return fmt.Errorf("%s: no pages (*.md files) found", r.src.name)
	}
	r.locales = r.src.locales()
	r.languages()
	r.pages = map[string]string{}
	for _, name := range pages {
		stem := strings.TrimSuffix(name, ".md")
		r.pages[stem+".html"] = stem
	}
	layout, err := r.src.read(layoutFile)
	if err != nil {
		return err
	}
	for _, name := range pages {
		if err := r.page(name, layout); err != nil {
			return err
		}
	}
	png, err := qrPNG(r.cfg.MailDomain)
	if err != nil {
		return err
	}
	r.add(qrName(r.cfg.MailDomain), png)
	if r.tabbed {
		r.add(tabsCSS, []byte(languageTabsCSS))
	}
	for _, name := range assets {
		if r.site.files[name] != nil {
			r.warn(fmt.Sprintf("%s: a generated file has this name; the file is not served", r.src.file(name)))
			continue
		}
		body, err := r.src.read(name)
		if err != nil {
			return err
		}
		r.add(name, []byte(body))
	}
	return nil
}

// languages resolves the configured languages. Codes were checked when the
// config was read; ALL takes every known language under locales/.
func (r *renderer) languages() {
	codes := r.cfg.Languages
	if r.cfg.AllLanguages {
		codes = nil
		for _, code := range allLanguages(r.locales) {
			if _, ok := config.LookupLanguage(code); ok {
				codes = append(codes, code)
			} else {
				r.warn(fmt.Sprintf("%s: not a language code filtermail knows; left out", r.src.file("locales/"+r.locales[code])))
			}
		}
		if len(codes) == 0 {
			codes = []string{"EN"}
		}
	}
	for _, code := range codes {
		l, _ := config.LookupLanguage(code)
		r.langs = append(r.langs, l)
	}
}

// page renders one Markdown page in each configured language. With one
// language the page is served as <stem>.html. With several, each language
// has a page of its own, <stem>.<lang>.html, whose links to the site's
// pages lead to their pages in the same language, and <stem>.html is the
// first language's page with the links as written.
func (r *renderer) page(name, layout string) error {
	stem := strings.TrimSuffix(name, ".md")
	for i, l := range r.langs {
		served := stem + ".html"
		if len(r.langs) > 1 {
			served = variantName(stem, l)
		}
		out, err := r.pageIn(name, served, layout, l)
		if err != nil {
			return err
		}
		if i == 0 {
			r.addPage(name, stem+".html", out)
		}
		if len(r.langs) > 1 {
			r.addPage(name, served, linkLanguage(out, r.pages, l))
		}
	}
	return nil
}

// variantName is the name the page from stem.md is served under in the
// language l when there are several.
func variantName(stem string, l config.Language) string {
	return stem + "." + l.Tag() + ".html"
}

// pageIn renders a Markdown page in the language l: the page as a
// template, the language's text in place of the placeholder, all of it
// into the layout, and the result again until it settles. served names
// the page in messages.
func (r *renderer) pageIn(name, served, layout string, l config.Language) (string, error) {
	stem := strings.TrimSuffix(name, ".md")
	pagename := stem
	if stem == "index" {
		pagename = "home"
	}
	vars := templateVars(r.cfg, pagename)
	vars["lang"] = l.Tag()
	j := r.jinja(l)
	text, err := r.src.read(name)
	if err != nil {
		return "", err
	}
	text, err = j.render(r.src.file(name), text, vars)
	if err != nil {
		return "", err
	}
	var body strings.Builder
	parts := strings.Split(text, placeholder)
	for i, part := range parts {
		if i > 0 {
			t, err := r.translation(name, l, vars)
			if err != nil {
				return "", err
			}
			if i == 1 && len(r.langs) > 1 {
				body.WriteString(languageTabs(stem, l, r.langs, t))
				r.tabbed = true
			} else {
				body.WriteString(section(l, t))
			}
		}
		h, err := r.md.toHTML(r.src.file(name), part)
		if err != nil {
			return "", err
		}
		body.WriteString(h)
	}
	vars["markdown_html"] = body.String()
	vars["title"] = pageTitle(body.String(), r.cfg.MailDomain)
	out, err := j.render(r.src.file(layoutFile), layout, vars)
	if err != nil {
		return "", err
	}
	localized := len(parts) > 1
	if strings.Contains(out, placeholder) {
		t, err := r.layoutText(l, vars)
		if err != nil {
			return "", err
		}
		out = strings.ReplaceAll(out, placeholder, t)
		localized = true
	}
	out, err = j.settle(served, out, vars)
	if err != nil {
		return "", err
	}
	if localized {
		out = setLang(out, l)
	}
	return out, nil
}

// layoutText renders the layout's text, such as the links between the
// pages, in the language l: locales/<LANG>/page-layout.html, HTML with
// template syntax. A language without one gets the first configured
// language's or the English one, marked as such, and a warning.
func (r *renderer) layoutText(l config.Language, vars map[string]any) (string, error) {
	en, _ := config.LookupLanguage("EN")
	var missing error
	for _, c := range append(append([]config.Language{l}, r.langs...), en) {
		name := path.Join("locales", r.localeDir(c), layoutFile)
		text, err := r.src.read(name)
		if err != nil {
			if missing == nil {
				missing = err
			}
			continue
		}
		text, err = r.jinja(c).render(r.src.file(name), text, vars)
		if err != nil {
			return "", err
		}
		if c.Code == l.Code {
			return text, nil
		}
		r.warnLayout(l, fmt.Sprintf("%v; the %s pages show the %s one", missing, l.Code, c.Code))
		return fmt.Sprintf("<span lang=\"%s\">%s</span>", c.Tag(), text), nil
	}
	r.warnLayout(l, fmt.Sprintf("%v; %s in %s is left empty", missing, placeholder, layoutFile))
	return "", nil
}

// warnLayout warns once per language that its layout text is missing.
func (r *renderer) warnLayout(l config.Language, msg string) {
	if !r.layoutWarned[l.Code] {
		r.layoutWarned[l.Code] = true
		r.warn(msg)
	}
}

// localeDir is the folder under locales/ with the texts in the language l.
func (r *renderer) localeDir(l config.Language) string {
	if dir, ok := r.locales[l.Code]; ok {
		return dir
	}
	return l.Code
}

// firstHeading finds the first top-level heading in a page's HTML.
var firstHeading = regexp.MustCompile(`(?is)<h1\b[^>]*>(.*?)</h1>`)

// tags matches HTML tags, to take the text out of a heading.
var tags = regexp.MustCompile(`<[^>]*>`)

// pageTitle is the title of a page: the text of its first top-level
// heading, in the page's language, or the mail domain.
func pageTitle(body, mailDomain string) string {
	m := firstHeading.FindStringSubmatch(body)
	if m == nil {
		return html.EscapeString(mailDomain)
	}
	if title := strings.Join(strings.Fields(tags.ReplaceAllString(m[1], "")), " "); title != "" {
		return title
	}
	return html.EscapeString(mailDomain)
}

// translation renders the page's text in the language l, as HTML. A
// missing translation shows a notice and is warned about.
func (r *renderer) translation(page string, l config.Language, vars map[string]any) (string, error) {
	name := path.Join("locales", r.localeDir(l), page)
	text, err := r.src.read(name)
	if err != nil {
		r.warn(fmt.Sprintf("%v; the %s page says it is not translated", err, l.Code))
		return missingNotice(l), nil
	}
	text, err = r.jinja(l).render(r.src.file(name), text, vars)
	if err != nil {
		return "", err
	}
	return r.md.toHTML(r.src.file(name), text)
}

// missingNotice stands for a missing translation, in English.
func missingNotice(l config.Language) string {
	return fmt.Sprintf("<p class=\"untranslated\" lang=\"en\">This page is not available in %s yet.</p>\n", html.EscapeString(l.Name))
}

// addPage adds a page rendered from the source file src, unless a page of
// that name was made before.
func (r *renderer) addPage(src, name, body string) {
	if r.site.files[name] != nil {
		r.warn(fmt.Sprintf("%s: another page is served as %s; this one is not", r.src.file(src), name))
		return
	}
	r.add(name, []byte(body))
}

func (r *renderer) add(name string, body []byte) {
	sum := sha256.Sum256(body)
	r.site.files[name] = &File{
		Name:        name,
		ContentType: contentType(name),
		Body:        body,
		ETag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
	}
}

func contentType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}
