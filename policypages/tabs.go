package policypages

import (
	"fmt"
	"html"
	"strings"

	"filtermail/config"
)

// tabsCSS is the stylesheet of the language tabs; pages with tabs link it.
const tabsCSS = "language-tabs.css"

// languageTabs puts the language choice above the text of the page from
// stem.md in the language l: a tab for each language, which links to the
// page in that language, the tab of l marked as the current one. The tabs
// are plain links and need no script.
func languageTabs(stem string, l config.Language, langs []config.Language, text string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<div class=\"language-tabs\">\n<link rel=\"stylesheet\" href=\"%s\">\n<p class=\"language-choice\">\n", tabsCSS)
	for _, o := range langs {
		current := ""
		if o.Code == l.Code {
			current = ` aria-current="page"`
		}
		fmt.Fprintf(&b, "<a href=\"%s\" hreflang=\"%s\" lang=\"%s\"%s>%s</a>\n",
			variantName(stem, o), o.Tag(), o.Tag(), current, html.EscapeString(o.Name))
	}
	b.WriteString("</p>\n")
	b.WriteString(section(l, text))
	b.WriteString("</div>\n")
	return b.String()
}

// section holds a page's text in the language l.
func section(l config.Language, text string) string {
	attrs := fmt.Sprintf(" lang=\"%s\"", l.Tag())
	if l.RTL {
		attrs += " dir=\"rtl\""
	}
	return fmt.Sprintf("<section%s>\n%s</section>\n", attrs, text)
}

// languageTabsCSS draws the language choice as tabs over the text, the
// current one marked.
const languageTabsCSS = `.language-choice {
	display: flex;
	flex-wrap: wrap;
	gap: 0.2em;
	margin: 0;
}
.language-choice a {
	padding: 0.4em 1em;
	border: 1px solid #bbb;
	border-bottom: none;
	border-radius: 0.4em 0.4em 0 0;
	color: #444;
	background: #f2f2f2;
	text-decoration: none;
}
.language-choice a[aria-current="page"] {
	color: #000;
	background: #fff;
	font-weight: bold;
}
.language-choice a:focus-visible {
	outline: 2px solid #3067b8;
}
.language-tabs > section {
	border-top: 1px solid #bbb;
	padding-top: 0.5em;
}
`
