package policypages

import (
	"regexp"
	"strings"
	"testing"

	"filtermail/config"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"31457280", 31457280, true},
		{"100M", 100 << 20, true},
		{"500M", 500 << 20, true},
		{"100MB", 100 << 20, true},
		{"100mb", 100 << 20, true},
		{"100 M", 100 << 20, true},
		{" 1G ", 1 << 30, true},
		{"1GiB", 1 << 30, true},
		{"2T", 2 << 40, true},
		{"64k", 64 << 10, true},
		{"64KB", 64 << 10, true},
		{"512B", 512, true},
		{"", 0, false},
		{"M", 0, false},
		{"lots", 0, false},
		{"1.5G", 0, false},
		{"-1M", 0, false},
		{"10X", 0, false},
		{"100iB", 0, false},
		{"100MBB", 0, false},
		{"20000000T", 0, false},               // overflows
		{"99999999999999999999999", 0, false}, // overflows
	}
	for _, tt := range tests {
		got, ok := parseSize(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseSize(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{31457280, "30 MiB"},
		{20971520, "20 MiB"},
		{30000000, "28.6 MiB"}, // 28.61
		{100 << 20, "100 MiB"},
		{1536 << 20, "1.5 GiB"},
		{2047 << 20, "1.9 GiB"}, // 1.999: cut, not rounded up
		{1<<30 + 1, "1 GiB"},
		{2 << 40, "2 TiB"},
		{5000 << 40, "5000 TiB"},
	}
	for _, tt := range tests {
		if got := formatSize(tt.n, "."); got != tt.want {
			t.Errorf("formatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	if got := formatSize(1536<<20, ","); got != "1,5 GiB" {
		t.Errorf("with a decimal comma: %q", got)
	}
}

// The size filter takes numbers and Dovecot sizes; jinja2's filesizeformat
// stays as jinja2 has it, for operators' own templates.
func TestSizeFilter(t *testing.T) {
	en, _ := config.LookupLanguage("EN")
	de, _ := config.LookupLanguage("DE")
	vars := map[string]any{"config": map[string]any{
		"max_message_size": int64(20971520),
		"max_mailbox_size": "1536M",
		"odd":              "a lot",
		"flag":             true,
	}}
	tests := []struct {
		lang       config.Language
		tmpl, want string
	}{
		{en, "{{ config.max_message_size | size }}", "20 MiB"},
		{en, "{{ config.max_mailbox_size | size }}", "1.5 GiB"},
		{de, "{{ config.max_mailbox_size | size }}", "1,5 GiB"},
		{en, "{{ config.odd | size }}", "a lot"},
		{en, "{{ config.flag | size }}", "True"},
		{en, "{{ config.missing | size }}", ""},
		{en, "{{ config.max_message_size | filesizeformat(true) }}", "20.0 MiB"},
		{en, "{{ config.max_message_size | filesizeformat }}", "21.0 MB"},
	}
	for _, tt := range tests {
		got, err := newJinja(tt.lang).render("t", tt.tmpl, vars)
		if err != nil || got != tt.want {
			t.Errorf("%s in %s: %q, %v; want %q", tt.tmpl, tt.lang.Code, got, err, tt.want)
		}
	}
	if _, err := newJinja(en).render("t", "{{ 5 | size(2) }}", vars); err == nil {
		t.Error("size with an argument: no error")
	}
}

// Both sizes are written the same way on every page that shows them, in
// every language: the number in binary units, with the language's decimal
// mark.
func TestSizesOnPages(t *testing.T) {
	tests := []struct {
		message, mailbox string
		want             []string // EN; RU and DE write a decimal comma
	}{
		{"31457280", "500M", []string{"30 MiB", "500 MiB"}},
		{"20971520", "1G", []string{"20 MiB", "1 GiB"}},
		{"30000000", "100MB", []string{"28.6 MiB", "100 MiB"}},
		{"10485760", "1536M", []string{"10 MiB", "1.5 GiB"}},
		{"52428800", "2 G", []string{"50 MiB", "2 GiB"}},
		{"31457280", "lots", []string{"30 MiB", "lots"}},
		{"31457280", "", []string{"30 MiB", "500 MiB"}}, // the relay's default
	}
	oldForms := regexp.MustCompile(`\d[KMGT]B\b|\d\.0 [KMGT]i?B|\d+ ?Bytes`)
	for _, tt := range tests {
		site := render(t, loadConfig(t, "mail_domain = x.example", "languages = EN RU DE",
			"max_message_size = "+tt.message, "max_mailbox_size = "+tt.mailbox))
		for _, name := range []string{"info.html", "privacy.html"} {
			for lang, text := range languageTexts(t, site, name) {
				text = strings.Join(strings.Fields(text), " ")
				for _, want := range tt.want {
					if lang != "EN" {
						want = strings.Replace(want, ".", ",", 1)
					}
					if !strings.Contains(text, want) {
						t.Errorf("%s/%s, %s %s: %q missing", name, lang, tt.message, tt.mailbox, want)
					}
				}
				if m := oldForms.FindString(text); m != "" {
					t.Errorf("%s/%s, %s %s: size written as %q", name, lang, tt.message, tt.mailbox, m)
				}
			}
		}
	}
}
