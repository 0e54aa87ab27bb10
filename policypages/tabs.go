package policypages

import (
	"fmt"
	"html"
	"strings"

	"filtermail/config"
)

// tabsCSS is the stylesheet that makes language tabs work without
// JavaScript; pages with tabs link it.
const tabsCSS = "language-tabs.css"

// translation is one language's version of a page part, as HTML.
type translation struct {
	lang config.Language
	html string
}

// languageTabs shows translations side by side as tabs: one radio button
// and label per language, and CSS shows the content of the checked one.
// A single translation shows without tabs. group tells tab sets on one
// page apart.
func languageTabs(group int, ts []translation) string {
	if len(ts) == 1 {
		return section(ts[0], "")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<div class=\"language-tabs\">\n<link rel=\"stylesheet\" href=\"%s\">\n", tabsCSS)
	for i, t := range ts {
		checked := ""
		if i == 0 {
			checked = " checked"
		}
		id := fmt.Sprintf("language-tabs-%d-%s", group, t.lang.Code)
		fmt.Fprintf(&b, "<input type=\"radio\" name=\"language-tabs-%d\" id=\"%s\" class=\"language-%s\"%s>", group, id, t.lang.Code, checked)
		fmt.Fprintf(&b, "<label for=\"%s\" lang=\"%s\">%s</label>\n", id, t.lang.Tag(), html.EscapeString(t.lang.Name))
	}
	for _, t := range ts {
		b.WriteString(section(t, "language-tab language-"+t.lang.Code))
	}
	b.WriteString("</div>\n")
	return b.String()
}

func section(t translation, class string) string {
	attrs := fmt.Sprintf(" lang=\"%s\"", t.lang.Tag())
	if class != "" {
		attrs = fmt.Sprintf(" class=\"%s\"%s", class, attrs)
	}
	if t.lang.RTL {
		attrs += " dir=\"rtl\""
	}
	return fmt.Sprintf("<section%s>\n%s</section>\n", attrs, t.html)
}

// languageTabsCSS is the stylesheet for tabs in the given languages: the
// radio buttons are hidden but keep the keyboard focus, the label of the
// checked one is marked, and only its section shows.
func languageTabsCSS(langs []config.Language) string {
	var b strings.Builder
	b.WriteString(`.language-tabs > input {
	position: absolute;
	opacity: 0;
	pointer-events: none;
}
.language-tabs > label {
	display: inline-block;
	padding: 0.4em 1em;
	margin: 0 0.2em 0 0;
	border: 1px solid #bbb;
	border-bottom: none;
	border-radius: 0.4em 0.4em 0 0;
	cursor: pointer;
	color: #444;
	background: #f2f2f2;
}
.language-tabs > input:checked + label {
	color: #000;
	background: #fff;
	font-weight: bold;
}
.language-tabs > input:focus-visible + label {
	outline: 2px solid #3067b8;
}
.language-tabs > .language-tab {
	display: none;
	border-top: 1px solid #bbb;
	padding-top: 0.5em;
}
`)
	for _, l := range langs {
		fmt.Fprintf(&b, ".language-tabs > input.language-%s:checked ~ .language-%s { display: block; }\n", l.Code, l.Code)
	}
	return b.String()
}
