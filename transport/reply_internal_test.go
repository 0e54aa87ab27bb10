package transport

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// A reply of another relay reaches Postfix on one line, with its code,
// its enhanced code and the channel; a 421 is a 451.
func TestRemoteReply(t *testing.T) {
	for _, tt := range []struct {
		code     int
		enhanced smtp.EnhancedCode
		text     string
		ch       Channel
		want     string
	}{
		{250, smtp.NoEnhancedCode, "OK", HTTPS, "250 2.0.0 OK (HTTPS)"},
		{250, smtp.EnhancedCode{2, 0, 0}, "Ok: queued as 4Xyz", SMTP, "250 2.0.0 Ok: queued as 4Xyz (SMTP)"},
		{550, smtp.EnhancedCode{5, 1, 1}, "first line\nsecond line", SMTP, "550 5.1.1 first line second line (SMTP)"},
		{523, smtp.NoEnhancedCode, "Encryption Needed: Invalid Unencrypted Mail", HTTPS, "523 5.0.0 Encryption Needed: Invalid Unencrypted Mail (HTTPS)"},
		{421, smtp.EnhancedCode{4, 3, 0}, "closing", SMTP, "451 4.3.0 closing (SMTP)"},
		{451, smtp.EnhancedCode{5, 1, 1}, "wrong class", SMTP, "451 4.0.0 wrong class (SMTP)"},
		{250, smtp.NoEnhancedCode, "", SMTP, "250 2.0.0 OK (SMTP)"},
		{550, smtp.NoEnhancedCode, "a\x00b\rc\td", SMTP, "550 5.0.0 a b c d (SMTP)"},
	} {
		r := remoteReply(tt.code, tt.enhanced, tt.text, tt.ch)
		got := formatReply(r)
		if got != tt.want {
			t.Errorf("remoteReply(%d, %v, %q) = %q, want %q", tt.code, tt.enhanced, tt.text, got, tt.want)
		}
	}
	long := remoteReply(550, smtp.NoEnhancedCode, strings.Repeat("x", 5000), SMTP)
	if len(long.Message) > maxReplyText+20 {
		t.Errorf("a long reply is passed on with %d bytes", len(long.Message))
	}
}

func formatReply(r *smtp.SMTPError) string {
	e := r.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, e[0], e[1], e[2], r.Message)
}

// A reply line of /mxdeliv splits into code, enhanced code and text.
func TestParseReply(t *testing.T) {
	for _, tt := range []struct {
		line     string
		code     int
		enhanced smtp.EnhancedCode
		text     string
		ok       bool
	}{
		{"250 OK", 250, smtp.NoEnhancedCode, "OK", true},
		{"554 5.7.1 No DKIM signature found", 554, smtp.EnhancedCode{5, 7, 1}, "No DKIM signature found", true},
		{"451 4.7.5 try again", 451, smtp.EnhancedCode{4, 7, 5}, "try again", true},
		{"523", 523, smtp.NoEnhancedCode, "", true},
		{"5.7.1 nope", 0, smtp.NoEnhancedCode, "", false},
		{"199 low", 0, smtp.NoEnhancedCode, "", false},
		{"250-OK", 0, smtp.NoEnhancedCode, "", false},
		{"", 0, smtp.NoEnhancedCode, "", false},
	} {
		code, enh, text, ok := parseReply(tt.line)
		if code != tt.code || enh != tt.enhanced || text != tt.text || ok != tt.ok {
			t.Errorf("parseReply(%q) = %d %v %q %v, want %d %v %q %v", tt.line, code, enh, text, ok, tt.code, tt.enhanced, tt.text, tt.ok)
		}
	}
}

// Addresses are tried IPv6 and IPv4 in turn, the family of the first
// first, at most maxAddrs of them.
func TestInterleave(t *testing.T) {
	ips := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	for _, tt := range []struct{ in, want []netip.Addr }{
		{ips("::1", "::2", "127.0.0.1", "127.0.0.2"), ips("::1", "127.0.0.1", "::2", "127.0.0.2")},
		{ips("127.0.0.1", "::1"), ips("127.0.0.1", "::1")},
		{ips("127.0.0.1", "127.0.0.2"), ips("127.0.0.1", "127.0.0.2")},
		{ips("::1", "::2", "::3", "::4", "::5", "::6", "127.0.0.1"), ips("::1", "127.0.0.1", "::2", "::3", "::4")},
		{nil, nil},
	} {
		if got := interleave(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("interleave(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// Recipient domains, and the IP literals of RFC 5321.
func TestDomainOf(t *testing.T) {
	for _, tt := range []struct{ addr, domain string }{
		{"bob@Example.ORG", "example.org"},
		{"bob@example.org.", "example.org"},
		{"\"a@b\"@example.org", "example.org"},
		{"bob@[127.0.0.2]", "[127.0.0.2]"},
		{"bob", ""},
		{"bob@", ""},
	} {
		if got := domainOf(tt.addr); got != tt.domain {
			t.Errorf("domainOf(%q) = %q, want %q", tt.addr, got, tt.domain)
		}
	}
	for _, tt := range []struct {
		domain string
		ip     string
	}{
		{"[127.0.0.2]", "127.0.0.2"},
		{"[IPv6:::1]", "::1"},
		{"[ipv6:2001:db8::1]", "2001:db8::1"},
		{"[::1]", ""},
		{"[IPv6:127.0.0.1]", ""},
		{"[example.org]", ""},
		{"127.0.0.2", ""},
	} {
		ip, ok := ipLiteral(tt.domain)
		if got := ""; ok {
			got = ip.String()
			if got != tt.ip {
				t.Errorf("ipLiteral(%q) = %s, want %q", tt.domain, got, tt.ip)
			}
		} else if tt.ip != "" {
			t.Errorf("ipLiteral(%q) is no literal, want %s", tt.domain, tt.ip)
		}
	}
}

// The memory budget holds: a message that does not fit is not held, and
// what was held is given back.
func TestMessageBudget(t *testing.T) {
	b := &budget{limit: 100 << 10}
	m, err := readMessage(strings.NewReader(strings.Repeat("x", 50<<10)), b)
	if err != nil {
		t.Fatal(err)
	}
	if m.size != 50<<10 {
		t.Errorf("size %d", m.size)
	}
	var out bytes.Buffer
	out.ReadFrom(m.reader())
	out.Reset()
	out.ReadFrom(m.reader())
	if out.Len() != 50<<10 {
		t.Errorf("read back %d bytes the second time", out.Len())
	}
	if _, err := readMessage(strings.NewReader(strings.Repeat("x", 60<<10)), b); err != errBudget {
		t.Errorf("a message over the budget left: %v, want errBudget", err)
	}
	m.release()
	if b.left() != b.limit {
		t.Errorf("after release %d of %d left", b.left(), b.limit)
	}
}

// Delivery slots: in all and per domain; a domain's count goes away.
func TestSlots(t *testing.T) {
	s := newSlots(3)
	for _, tt := range []struct{ domain, want string }{
		{"a", ""}, {"a", ""}, {"a", busyDomain}, {"b", ""}, {"c", busyTotal},
	} {
		if got := s.take(tt.domain, 2); got != tt.want {
			t.Errorf("take(%s) = %q, want %q", tt.domain, got, tt.want)
		}
	}
	// A recipient waits a moment for a slot of its domain's.
	s.give("b")
	go func() {
		time.Sleep(50 * time.Millisecond)
		s.give("a")
	}()
	if got := s.takeWait("a", 2, 10*time.Second); got != "" {
		t.Errorf("takeWait while a slot is given back: %q", got)
	}
	if got := s.take("b", 2); got != "" {
		t.Errorf("take(b) = %q", got)
	}
	if got := s.takeWait("c", 2, time.Minute); got != busyTotal {
		t.Errorf("takeWait with every slot taken: %q, want %q at once", got, busyTotal)
	}
	for _, d := range []string{"a", "a", "b"} {
		s.give(d)
	}
	if got := s.takeWait("a", 0, 10*time.Millisecond); got != busyDomain {
		t.Errorf("takeWait past the domain's limit: %q, want %q", got, busyDomain)
	}
	if len(s.perDomain) != 0 || s.total != 0 {
		t.Errorf("after giving all back: %d in flight, domains %v", s.total, s.perDomain)
	}
}

// A domain starts with few deliveries at once, gets all once a relay of
// it answered, and is suspended when none could be reached.
func TestDestinations(t *testing.T) {
	d := newDestinations()
	if got := d.limit("a", 20); got != initialPerDomain {
		t.Errorf("limit of a new domain %d, want %d", got, initialPerDomain)
	}
	if got := d.limit("a", 2); got != 2 {
		t.Errorf("limit under a lower bound %d, want 2", got)
	}
	d.reached("a")
	if got := d.limit("a", 20); got != 20 {
		t.Errorf("limit of a domain that answered %d, want 20", got)
	}
	d.unreachable("a", "timeout")
	if reason, ok := d.suspended("a"); !ok || reason != "timeout" {
		t.Errorf("suspended = %q %v after no relay was reached", reason, ok)
	}
	if got := d.limit("a", 20); got != initialPerDomain {
		t.Errorf("limit after a failure %d, want %d", got, initialPerDomain)
	}
	d.reached("a")
	if _, ok := d.suspended("a"); ok {
		t.Error("still suspended after a relay answered")
	}
}
