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
	tabbed  bool              // some page shows language tabs
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
		r.add(tabsCSS, []byte(languageTabsCSS(r.langs)))
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

// page renders one Markdown page: the Markdown file as a template, the
// translations in place of the placeholder, all of it into the layout,
// and the result again until it settles.
func (r *renderer) page(name, layout string) error {
	stem := strings.TrimSuffix(name, ".md")
	pagename := stem
	if stem == "index" {
		pagename = "home"
	}
	vars := templateVars(r.cfg, pagename)
	vars["lang"] = r.langs[0].Tag()
	text, err := r.src.read(name)
	if err != nil {
		return err
	}
	j := r.jinja(r.langs[0])
	text, err = j.render(r.src.file(name), text, vars)
	if err != nil {
		return err
	}
	var body strings.Builder
	parts := strings.Split(text, placeholder)
	for i, part := range parts {
		if i > 0 {
			tabs, err := r.translations(name, vars)
			if err != nil {
				return err
			}
			body.WriteString(languageTabs(i, tabs))
			r.tabbed = r.tabbed || len(tabs) > 1
		}
		h, err := r.md.toHTML(r.src.file(name), part)
		if err != nil {
			return err
		}
		body.WriteString(h)
	}
	vars["markdown_html"] = body.String()
	out, err := j.render(r.src.file(layoutFile), layout, vars)
	if err != nil {
		return err
	}
	out, err = j.settle(stem+".html", out, vars)
	if err != nil {
		return err
	}
	r.add(stem+".html", []byte(out))
	return nil
}

// translations renders the page's text in each configured language. A
// missing translation shows a notice and is warned about.
func (r *renderer) translations(page string, vars map[string]any) ([]translation, error) {
	var ts []translation
	for _, l := range r.langs {
		dir, ok := r.locales[l.Code]
		if !ok {
			dir = l.Code
		}
		name := path.Join("locales", dir, page)
		text, err := r.src.read(name)
		if err != nil {
			r.warn(fmt.Sprintf("%v; the %s tab says the page is not translated", err, l.Code))
			ts = append(ts, translation{l, missingNotice(l)})
			continue
		}
		text, err = r.jinja(l).render(r.src.file(name), text, vars)
		if err != nil {
			return nil, err
		}
		h, err := r.md.toHTML(r.src.file(name), text)
		if err != nil {
			return nil, err
		}
		ts = append(ts, translation{l, h})
	}
	return ts, nil
}

func missingNotice(l config.Language) string {
	return fmt.Sprintf("<p class=\"untranslated\">This page is not available in %s yet.</p>\n", html.EscapeString(l.Name))
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
