package mxdeliv

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// checkAddress fails if addr, as address returned it, could not go into
// an SMTP envelope as it is.
func checkAddress(t *testing.T, in, addr string) {
	t.Helper()
	if len(addr) > 512 {
		t.Fatalf("address(%q) = %d bytes", in, len(addr))
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			t.Fatalf("address(%q) = %q, which holds %q", in, addr, c)
		}
	}
	// What address returns, it takes back unchanged, bare or in angle
	// brackets.
	for _, v := range []string{addr, "<" + addr + ">", " <" + addr + "> "} {
		if got, ok := address(v); !ok || got != addr {
			t.Fatalf("address(%q) = %q, %v; want %q back", v, got, ok, addr)
		}
	}
}

// simple makes a simple address of the bytes of s: local@domain of
// letters, digits and . - _ +.
func simple(s string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+"
	var b strings.Builder
	for i := 0; i < len(s) && i < 100; i++ {
		b.WriteByte(alphabet[int(s[i])%len(alphabet)])
	}
	local := b.String()
	return "u" + local + "@" + "d" + strings.ToLower(local) + ".example"
}

func FuzzAddress(f *testing.F) {
	for _, s := range []string{
		"", "<>", "alice@example.org", "<alice@example.org>", " <alice@example.org> ", "<<a>>", "<", ">", "<a", "a>",
		"a b@c", "a\tb", "a\x00b", "a\x7fb", "a\r\nX-Evil: 1", "\u00a0a@b\u00a0", "\u0085", "Gr\xfc\xdfe@example.org",
		"\xff<\xfe>", "\"a b\"@c", strings.Repeat("a", 513),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		addr, ok := address(v)
		if ok {
			checkAddress(t, v, addr)
		} else if addr != "" {
			t.Fatalf("address(%q) refused it but returned %q", v, addr)
		}
		s := simple(v)
		for _, in := range []string{s, "<" + s + ">", " " + s + "\t", "\t< " + s + " >"} {
			if got, ok := address(in); !ok || got != s {
				t.Fatalf("address(%q) = %q, %v; want %q", in, got, ok, s)
			}
		}
	})
}

func FuzzEnvelope(f *testing.F) {
	f.Add("alice@example.org", "bob@chat.example.org\n<carol@chat.example.org>", false)
	f.Add("", "", false)
	f.Add("<>", "<>\n", true)
	f.Add("a b", "c", false)
	f.Add("alice@example.org", "bob@chat.example.org, dave@chat.example.org", false)
	f.Add("alice@example.org", strings.Repeat("x@y\n", MaxRecipients), false)
	f.Add("alice@example.org", strings.Repeat("\n", MaxRecipients+1), false)
	f.Fuzz(func(t *testing.T, from, to string, noFrom bool) {
		h := http.Header{}
		if !noFrom {
			h["X-Mail-From"] = []string{from}
		}
		values := strings.Split(to, "\n")
		h["X-Mail-To"] = values
		gotFrom, gotTo, err := envelope(h)

		var reply *smtp.SMTPError
		if err != nil {
			if !errors.As(err, &reply) {
				t.Fatalf("envelope: %v, not an SMTP reply", err)
			}
			if !slices.Contains([]*smtp.SMTPError{errBadSender, errBadRecipient, errTooMany, errNoRecipients}, reply) {
				t.Fatalf("envelope: %v", err)
			}
			if gotFrom != "" || gotTo != nil {
				t.Fatalf("envelope refused with %v but returned %q, %q", err, gotFrom, gotTo)
			}
			if reply == errTooMany && len(values) <= MaxRecipients {
				t.Fatalf("too many recipients: %d", len(values))
			}
			return
		}
		if len(values) > MaxRecipients || len(gotTo) == 0 || len(gotTo) > len(values) {
			t.Fatalf("envelope took %d recipients of %d header values", len(gotTo), len(values))
		}
		if noFrom && gotFrom != "" {
			t.Fatalf("no X-MAIL-FROM, but the sender %q", gotFrom)
		}
		if gotFrom != "" {
			checkAddress(t, from, gotFrom)
		}
		// The recipients are the addresses of the values, in order, the
		// empty ones left out.
		var want []string
		for _, v := range values {
			a, ok := address(v)
			if !ok {
				t.Fatalf("envelope took %q, which address refuses", v)
			}
			if a != "" {
				want = append(want, a)
			}
		}
		if !slices.Equal(gotTo, want) {
			t.Fatalf("envelope recipients %q, want %q", gotTo, want)
		}
		for _, a := range gotTo {
			checkAddress(t, a, a)
		}
	})
}
