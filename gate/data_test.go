package gate

import (
	"strings"
	"testing"
)

func TestCheckLineEnds(t *testing.T) {
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
			b := &Buffer{}
			for _, part := range []string{msg[:i], msg[i:]} {
				if part != "" {
					b.chunks = append(b.chunks, []byte(part))
				}
			}
			b.size = int64(len(msg))
			if got := checkLineEnds(b); got != want {
				t.Errorf("%q split at %d: %v, want %v", msg, i, got, want)
			}
		}
	}
}

func FuzzCheckLineEnds(f *testing.F) {
	f.Add("a\r\nb\r\n", 1)
	f.Add("Hello!\r\r\n", 7)
	f.Fuzz(func(t *testing.T, msg string, split int) {
		want := msg != "" && strings.HasSuffix(msg, "\r\n") &&
			strings.Count(msg, "\r") == strings.Count(msg, "\n") &&
			strings.Count(msg, "\r\n") == strings.Count(msg, "\n")
		if split < 0 || split > len(msg) {
			split = len(msg)
		}
		b := &Buffer{chunks: [][]byte{[]byte(msg[:split]), []byte(msg[split:])}, size: int64(len(msg))}
		if got := checkLineEnds(b); got != want {
			t.Errorf("%q: %v, want %v", msg, got, want)
		}
	})
}
