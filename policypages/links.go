package policypages

import (
	"path"
	"regexp"
	"strings"

	"filtermail/config"
)

// startTag matches the start tag of a link, <a …>, with its attributes
// quoted in any way.
var startTag = regexp.MustCompile(`(?i)<a\s(?:[^>"']|"[^"]*"|'[^']*')*>`)

// attribute matches one attribute in a start tag: its name and, if it has
// one, its value as written.
var attribute = regexp.MustCompile(`(\s+[^\s"'>/=]+)(\s*=\s*)?("[^"]*"|'[^']*'|[^\s"'>]+)?`)

// linkLanguage makes the links of a page that lead to the site's pages
// lead to their pages in the language l. pages maps the served name of
// each page to its stem. Links elsewhere, to assets, or within the page
// are left as they are.
func linkLanguage(page string, pages map[string]string, l config.Language) string {
	return startTag.ReplaceAllStringFunc(page, func(tag string) string {
		return attribute.ReplaceAllStringFunc(tag, func(attr string) string {
			m := attribute.FindStringSubmatch(attr)
			if !strings.EqualFold(strings.TrimSpace(m[1]), "href") || m[3] == "" {
				return attr
			}
			value, quote := m[3], ""
			if value[0] == '"' || value[0] == '\'' {
				value, quote = value[1:len(value)-1], value[:1]
			}
			href, ok := variantHref(value, pages, l)
			if !ok {
				return attr
			}
			return m[1] + m[2] + quote + href + quote
		})
	})
}

// variantHref returns the link href with its path changed to the page in
// the language l, if it leads to one of the site's pages: a relative path
// or one from the site's root, with any query and fragment.
func variantHref(href string, pages map[string]string, l config.Language) (string, bool) {
	p, rest := href, ""
	if i := strings.IndexAny(href, "?#"); i >= 0 {
		p, rest = href[:i], href[i:]
	}
	if p == "" || strings.HasPrefix(p, "//") || strings.ContainsAny(p, ":\\") {
		return "", false // the page itself, another site, or a scheme
	}
	// All pages are in the root, which ".." does not leave.
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" {
		return strings.TrimSuffix(p, "/") + "/" + variantName("index", l) + rest, pages["index.html"] != ""
	}
	stem, ok := pages[name]
	if !ok || !strings.HasSuffix(p, name) {
		return "", false
	}
	return p[:len(p)-len(name)] + variantName(stem, l) + rest, true
}

// htmlTag matches the start tag of the html element.
var htmlTag = regexp.MustCompile(`(?i)<html(\s(?:[^>"']|"[^"]*"|'[^']*')*)?>`)

// langAttr matches a lang attribute.
var langAttr = regexp.MustCompile(`(?i)\slang\s*=`)

// setLang gives a page's html element the language l, unless the layout
// gave it one.
func setLang(page string, l config.Language) string {
	loc := htmlTag.FindStringIndex(page)
	if loc == nil || langAttr.MatchString(page[loc[0]:loc[1]]) {
		return page
	}
	at := loc[0] + len("<html")
	return page[:at] + ` lang="` + l.Tag() + `"` + page[at:]
}
