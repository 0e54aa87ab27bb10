package tlspolicy_test

import (
	"testing"

	"filtermail/tlspolicy"
)

// Matching an MX host against a policy's patterns, RFC 8461 section 4.1.
func TestMatches(t *testing.T) {
	tests := []struct {
		patterns []string
		host     string
		want     bool
	}{
		{[]string{"mx.example.com"}, "mx.example.com", true},
		{[]string{"mx.example.com"}, "MX.Example.COM.", true},
		{[]string{"mx.example.com"}, "mx2.example.com", false},
		{[]string{"mx.example.com"}, "a.mx.example.com", false},
		{[]string{"*.example.com"}, "mail.example.com", true},
		{[]string{"*.example.com"}, "example.com", false},
		{[]string{"*.example.com"}, "foo.bar.example.com", false},
		{[]string{"*.example.com"}, "mail.example.org", false},
		{[]string{"mx.example.org", "*.example.com"}, "mail.example.com", true},
		{[]string{"xn--bcher-kva.example"}, "bücher.example", true},
		{[]string{"xn--bcher-kva.example"}, "xn--bcher-kva.example", true},
		{[]string{"*.example.com"}, "_test.example.com", true},
		{nil, "mx.example.com", false},
		{[]string{"mx.example.com"}, "", false},
		{[]string{"mx.example.com"}, "mx..example.com", false},
		{[]string{"", "*.", "a..b"}, "a.b", false},
		{[]string{"*.example.com"}, "*.example.com", false},
	}
	for _, tt := range tests {
		sts := tlspolicy.STS{Mode: tlspolicy.Enforce, MX: tt.patterns}
		if got := sts.Matches(tt.host); got != tt.want {
			t.Errorf("%q matches %q: %v, want %v", tt.patterns, tt.host, got, tt.want)
		}
	}
}
