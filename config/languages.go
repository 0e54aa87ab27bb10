package config

import (
	"fmt"
	"strings"
)

// Language is one language the policy pages can be shown in.
type Language struct {
	Code string // as written in languages, upper case: "EN"
	Name string // the language's name in itself, for the page tabs
	RTL  bool   // written right to left
}

// Tag is the language's BCP 47 tag for the HTML lang attribute.
func (l Language) Tag() string { return strings.ToLower(l.Code) }

// knownLanguages holds every code the languages key accepts. Pages for a
// code without a translation say so in its tab.
var knownLanguages = [...]Language{
	{"AR", "العربية", true}, {"BE", "Беларуская", false}, {"BG", "Български", false},
	{"CA", "Català", false}, {"CS", "Čeština", false}, {"DA", "Dansk", false},
	{"DE", "Deutsch", false}, {"EL", "Ελληνικά", false}, {"EN", "English", false},
	{"EO", "Esperanto", false}, {"ES", "Español", false}, {"ET", "Eesti", false},
	{"EU", "Euskara", false}, {"FA", "فارسی", true}, {"FI", "Suomi", false},
	{"FR", "Français", false}, {"GL", "Galego", false}, {"HE", "עברית", true},
	{"HR", "Hrvatski", false}, {"HU", "Magyar", false}, {"ID", "Bahasa Indonesia", false},
	{"IT", "Italiano", false}, {"JA", "日本語", false}, {"KA", "ქართული", false},
	{"KO", "한국어", false}, {"LT", "Lietuvių", false}, {"LV", "Latviešu", false},
	{"NB", "Norsk bokmål", false}, {"NL", "Nederlands", false}, {"PL", "Polski", false},
	{"PT", "Português", false}, {"RO", "Română", false}, {"RU", "Русский", false},
	{"SK", "Slovenčina", false}, {"SL", "Slovenščina", false}, {"SQ", "Shqip", false},
	{"SR", "Српски", false}, {"SV", "Svenska", false}, {"TR", "Türkçe", false},
	{"UK", "Українська", false}, {"VI", "Tiếng Việt", false}, {"ZH", "中文", false},
}

// LookupLanguage returns the language with the given code, in any case.
func LookupLanguage(code string) (Language, bool) {
	code = strings.ToUpper(code)
	for _, l := range knownLanguages {
		if l.Code == code {
			return l, true
		}
	}
	return Language{}, false
}

// parseLanguages reads the languages key: codes separated by spaces, in the
// order the pages show them, or ALL for every language the page sources
// have.
func parseLanguages(value string) (codes []string, all bool, err error) {
	fields := strings.Fields(strings.ToUpper(value))
	if len(fields) == 0 {
		return []string{"EN"}, false, nil
	}
	if len(fields) == 1 && fields[0] == "ALL" {
		return nil, true, nil
	}
	seen := map[string]bool{}
	for _, code := range fields {
		if code == "ALL" {
			return nil, false, fmt.Errorf("languages: ALL stands alone, not with other codes")
		}
		if _, ok := LookupLanguage(code); !ok {
			return nil, false, fmt.Errorf("languages: unknown language code %q (two letters, such as EN, RU, DE)", code)
		}
		if seen[code] {
			return nil, false, fmt.Errorf("languages: %s is listed twice", code)
		}
		seen[code] = true
		codes = append(codes, code)
	}
	return codes, false, nil
}
