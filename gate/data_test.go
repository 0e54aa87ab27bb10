package gate

import (
	"strings"
	"testing"
)

func TestLineEnds(t *testing.T) {
	for msg, want := range map[string]bool{
		"":                         false,
		"\r\n":                     true,
		"Subject: x\r\n\r\nhi\r\n": true,
		"Subject: x\r\n\r\nhi":     false, // no final CRLF
		"Subject: x\n\nhi\n":       false,
		"a\r\nb\nc\r\n":            false, // bare LF
		"a\r\nb\rc\r\n":            false, // bare CR
		"Hello!\r\r\n":             false,
		"a\r":                      false,
		"\n":                       false,
		"\r\r\n\r\n":               false,
		"8bit \xe4\xf6\r\n":        true,
	} {
		// Whole, and split at every place.
		for i := 0; i <= len(msg); i++ {
			var l lineEnds
			l.check([]byte(msg[:i]))
			l.check([]byte(msg[i:]))
			if got := l.ok(); got != want {
				t.Errorf("%q split at %d: %v, want %v", msg, i, got, want)
			}
		}
	}
}

func FuzzLineEnds(f *testing.F) {
	f.Add("a\r\nb\r\n", 1)
	f.Add("Hello!\r\r\n", 7)
	f.Fuzz(func(t *testing.T, msg string, split int) {
		want := msg != "" && strings.HasSuffix(msg, "\r\n") &&
			strings.Count(msg, "\r") == strings.Count(msg, "\n") &&
			strings.Count(msg, "\r\n") == strings.Count(msg, "\n")
		if split < 0 || split > len(msg) {
			split = len(msg)
		}
		var l lineEnds
		l.check([]byte(msg[:split]))
		l.check([]byte(msg[split:]))
		if got := l.ok(); got != want {
			t.Errorf("%q: %v, want %v", msg, got, want)
		}
	})
}

// The header ends where the MIME reader ends it: at the first empty line,
// however the bytes are cut.
func TestHeaderEnd(t *testing.T) {
	for msg, want := range map[string]int{
		"\r\nbody":                     2,
		"\nbody":                       1,
		"From: a\r\n\r\nbody":          11,
		"From: a\r\nTo: b\r\n\r\n\r\n": 18,
		"From: a\n\nbody":              9,
		"From: a\r\n \r\n\r\n":         14, // a folded line of a space is not empty
		"From: a\r\n\r\r\n\r\n":        14, // nor is "\r\r\n"
		"From: a\r\n":                  -1,
		"From: a\r\nb\r\n\r":           -1,
	} {
		for i := 0; i <= len(msg); i++ {
			var h headerEnd
			got := -1
			if k, done := h.scan([]byte(msg[:i])); done {
				got = k
			} else if k, done := h.scan([]byte(msg[i:])); done {
				got = i + k
			}
			if got != want {
				t.Errorf("%q split at %d: %d, want %d", msg, i, got, want)
			}
		}
	}
}
