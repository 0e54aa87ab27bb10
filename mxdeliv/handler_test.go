package mxdeliv_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"filtermail/filter/filtertest"
	"filtermail/internal/testnet"
	"filtermail/metrics"
	"filtermail/mxdeliv"
	"filtermail/smtpd/smtpdtest"
)

// encrypted returns an encrypted message from alice to bob, as Delta Chat
// writes it: PKESK v6 and SEIPD v2.
func encrypted(t *testing.T) []byte {
	t.Helper()
	return filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("Hello Bob\r\n")))
}

// plain returns an unencrypted message from alice to bob.
func plain() []byte {
	return filtertest.Plain(alice, bob, "Hello", "Hello Bob")
}

// Mail that passes is reinjected with its envelope, every recipient in
// order, and the exact bytes received; the answer is 200 "250 OK" only
// then.
func TestDelivered(t *testing.T) {
	e := start(t, config{})
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"encrypted", e.sign(encrypted(t))},
		{"cleartext to unmarked users", e.sign(plain())},
		{"8-bit", e.sign(filtertest.Message("From: <"+alice+">\nTo: <"+bob+">\nSubject: Gr\xfc\xdfe",
			"\xe0 bient\xf4t \xff\xfe\r\n"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			before := len(e.sink.Messages())
			got := e.post(envelope(alice, bob, "<"+carol+">", " "+dave+" "), tc.msg)
			e.expect(got, http.StatusOK, "250 OK")
			msgs := e.sink.Messages()
			if len(msgs) != before+1 {
				t.Fatalf("%d messages reinjected, want 1", len(msgs)-before)
			}
			m := msgs[before]
			if m.From != alice {
				t.Errorf("MAIL FROM:<%s>, want <%s>", m.From, alice)
			}
			if want := []string{bob, carol, dave}; !slices.Equal(m.To, want) {
				t.Errorf("RCPT TO %v, want %v", m.To, want)
			}
			if !bytes.Equal(m.Data, tc.msg) {
				t.Errorf("reinjected %d bytes that differ from the %d received", len(m.Data), len(tc.msg))
			}
		})
	}
	if strings.Contains(e.log.String(), "@") {
		t.Errorf("the log holds an address:\n%s", e.log)
	}
}

// X-MAIL-FROM absent or empty is the null sender, as is "<>"; angle
// brackets and surrounding space around an address are tolerated.
func TestSender(t *testing.T) {
	e := start(t, config{})
	msg := e.sign(plain())
	for _, tc := range []struct {
		name string
		hdr  http.Header
		want string
	}{
		{"bare", http.Header{"X-MAIL-FROM": {alice}, "X-MAIL-TO": {bob}}, alice},
		{"angle brackets", http.Header{"X-MAIL-FROM": {"<" + alice + ">"}, "X-MAIL-TO": {"<" + bob + ">"}}, alice},
		{"space", http.Header{"X-MAIL-FROM": {" < " + alice + " > "}, "X-MAIL-TO": {"\t" + bob}}, alice},
		{"lower-case header names", http.Header{"x-mail-from": {alice}, "x-mail-to": {bob}}, alice},
		{"absent", http.Header{"X-MAIL-TO": {bob}}, ""},
		{"empty", http.Header{"X-MAIL-FROM": {""}, "X-MAIL-TO": {bob}}, ""},
		{"<>", http.Header{"X-MAIL-FROM": {"<>"}, "X-MAIL-TO": {bob}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			before := len(e.sink.Messages())
			e.expect(e.post(tc.hdr, msg), http.StatusOK, "250 OK")
			msgs := e.sink.Messages()
			if len(msgs) != before+1 {
				t.Fatalf("%d messages reinjected, want 1", len(msgs)-before)
			}
			if m := msgs[before]; m.From != tc.want || !slices.Equal(m.To, []string{bob}) {
				t.Errorf("reinjected from <%s> to %v, want from <%s> to [%s]", m.From, m.To, tc.want, bob)
			}
		})
	}
}

// An envelope sender that is not the From address (forwarding, SRS) does
// not refuse the mail: it is reinjected with the null sender, so that no
// bounce goes to a forged address.
func TestForwarded(t *testing.T) {
	e := start(t, config{})
	msg := e.sign(encrypted(t))
	e.expect(e.post(envelope("SRS0=abcd=XY=example.org=alice@forwarder.example", bob), msg), http.StatusOK, "250 OK")
	msgs := e.sink.Messages()
	if len(msgs) != 1 || msgs[0].From != "" || !bytes.Equal(msgs[0].Data, msg) {
		t.Fatalf("reinjected %+v, want the message from <>", msgs)
	}
	if !strings.Contains(e.log.String(), "passed on with the sender <>") {
		t.Errorf("the log does not say the sender became <>:\n%s", e.log)
	}
}

// Cleartext to a user who refuses it is refused with upstream's 523;
// encrypted mail to the same user passes.
func TestEncryptionNeeded(t *testing.T) {
	e := start(t, config{})
	e.mark(dave, "enforceE2EEincoming")
	e.expect(e.post(envelope(alice, bob, dave), e.sign(plain())), http.StatusBadRequest,
		"523 Encryption Needed: Invalid Unencrypted Mail")
	e.noMail()
	e.expect(e.post(envelope(alice, bob, dave), e.sign(encrypted(t))), http.StatusOK, "250 OK")
	if n := len(e.sink.Messages()); n != 1 {
		t.Errorf("%d messages reinjected, want the encrypted one", n)
	}
	if got := e.messagesCounted(metrics.Refuse, "unencrypted"); got != 1 {
		t.Errorf("refuse/unencrypted counted %v times, want 1", got)
	}
}

// Mail that is not signed by its From domain is refused; a key that
// cannot be fetched for now is a 4xx, so the sender tries again.
func TestDKIM(t *testing.T) {
	t.Run("no signature", func(t *testing.T) {
		e := start(t, config{})
		e.expect(e.post(envelope(alice, bob), encrypted(t)), http.StatusBadRequest, "554 5.7.1 No DKIM signature found")
		e.noMail()
	})
	t.Run("altered after signing", func(t *testing.T) {
		e := start(t, config{})
		msg := e.sign(plain())
		msg = bytes.Replace(msg, []byte("Hello Bob"), []byte("Hello Eve"), 1)
		e.expect(e.post(envelope(alice, bob), msg), http.StatusBadRequest, "554 5.7.1 No valid DKIM signature found")
		e.noMail()
	})
	t.Run("signed by another domain", func(t *testing.T) {
		e := start(t, config{})
		msg := e.sign(filtertest.Plain("mallory@example.net", bob, "Hello", "Hello Bob"))
		e.expect(e.post(envelope("mallory@example.net", bob), msg), http.StatusBadRequest,
			"554 5.7.1 No valid DKIM signature found")
		e.noMail()
	})
	t.Run("SERVFAIL", func(t *testing.T) {
		e := start(t, config{})
		e.dns.Rcode(e.key.Name(), mdns.RcodeServerFailure)
		got := e.post(envelope(alice, bob), e.sign(encrypted(t)))
		e.expect(got, http.StatusBadRequest, "451 4.7.5 …")
		e.noMail()
		if got := e.messagesCounted(metrics.Tempfail, metrics.ReasonDKIMTempFail); got != 1 {
			t.Errorf("tempfail/%s counted %v times, want 1", metrics.ReasonDKIMTempFail, got)
		}
		// Once the key is served again, the same mail passes.
		e.dns.Rcode(e.key.Name(), mdns.RcodeSuccess)
		e.expect(e.post(envelope(alice, bob), e.sign(encrypted(t))), http.StatusOK, "250 OK")
	})
}

// The rules on the message itself: line ends (SMTP smuggling) and one
// From address.
func TestMessageRules(t *testing.T) {
	e := start(t, config{})
	signed := e.sign(encrypted(t))
	for _, tc := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"bare LF", bytes.ReplaceAll(signed, []byte("\r\n"), []byte("\n")), "500 Invalid DATA"},
		{"bare LF in the body", bytes.Replace(signed, []byte("\r\n\r\n"), []byte("\r\n\r\n\n"), 1), "500 Invalid DATA"},
		{"bare CR", bytes.Replace(signed, []byte("\r\n"), []byte("\r"), 1), "500 Invalid DATA"},
		{"no CRLF at the end", bytes.TrimSuffix(signed, []byte("\r\n")), "500 Invalid DATA"},
		{"empty", nil, "500 Invalid DATA"},
		// The From header is judged before DKIM: these need no signature.
		{"no From header", filtertest.Message("To: <"+bob+">\nSubject: Hi", "Hi"), "500 Invalid FROM header"},
		{"two From addresses", filtertest.Message("From: <"+alice+">, <mallory@example.org>\nTo: <"+bob+">", "Hi"),
			"500 Invalid FROM header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			e.expect(e.post(envelope(alice, bob), tc.msg), http.StatusBadRequest, tc.want)
		})
	}
	e.noMail()
}

// A disabled account is dropped from the envelope; if no recipient is
// left, the mail is accepted and dropped.
func TestDisabled(t *testing.T) {
	e := start(t, config{})
	e.mark(carol, "DISABLED")
	msg := e.sign(encrypted(t))
	e.expect(e.post(envelope(alice, bob, carol, dave), msg), http.StatusOK, "250 OK")
	msgs := e.sink.Messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{bob, dave}) {
		t.Fatalf("reinjected %+v, want one message to %s and %s", msgs, bob, dave)
	}

	e.expect(e.post(envelope(alice, carol), msg), http.StatusOK, "250 OK")
	if n := len(e.sink.Messages()); n != 1 {
		t.Errorf("%d messages reinjected, want the first only", n)
	}
	if got := e.messagesCounted(metrics.Dropped, metrics.ReasonDisabled); got != 1 {
		t.Errorf("dropped/%s counted %v times, want 1", metrics.ReasonDisabled, got)
	}
}

// The envelope is checked before the body is read: recipients, their
// number and the syntax of every address.
func TestEnvelope(t *testing.T) {
	e := start(t, config{})
	msg := e.sign(encrypted(t))
	many := func(n int) []string {
		to := make([]string, n)
		for i := range to {
			to[i] = fmt.Sprintf("user%d@chat.example.org", i)
		}
		return to
	}
	for _, tc := range []struct {
		name string
		hdr  http.Header
		want string
	}{
		{"no X-MAIL-TO", http.Header{"X-MAIL-FROM": {alice}}, "554 5.5.1 Error: no valid recipients"},
		{"empty X-MAIL-TO", envelope(alice, "", "<>"), "554 5.5.1 Error: no valid recipients"},
		{"1001 recipients", envelope(alice, many(mxdeliv.MaxRecipients+1)...), "452 4.5.3 Error: too many recipients"},
		{"space in the sender", envelope("alice @example.org", bob), "501 5.1.7 Bad sender address syntax"},
		{"two senders in one", envelope(alice+" "+alice, bob), "501 5.1.7 Bad sender address syntax"},
		{"open bracket", envelope("<"+alice, bob), "501 5.1.7 Bad sender address syntax"},
		{"nested brackets", envelope("<<"+alice+">>", bob), "501 5.1.7 Bad sender address syntax"},
		{"long sender", envelope(strings.Repeat("a", 600)+"@example.org", bob), "501 5.1.7 Bad sender address syntax"},
		{"two recipients in one", envelope(alice, bob+", "+dave), "501 5.1.3 Bad recipient address syntax"},
		{"tab in a recipient", envelope(alice, "bob\t@chat.example.org"), "501 5.1.3 Bad recipient address syntax"},
		{"close bracket", envelope(alice, bob, dave+">"), "501 5.1.3 Bad recipient address syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			e.expect(e.post(tc.hdr, msg), http.StatusBadRequest, tc.want)
		})
	}
	e.noMail()

	t.Run("1000 recipients", func(t *testing.T) {
		e := e.in(t)
		to := many(mxdeliv.MaxRecipients)
		e.expect(e.post(envelope(alice, to...), msg), http.StatusOK, "250 OK")
		if msgs := e.sink.Messages(); len(msgs) != 1 || !slices.Equal(msgs[0].To, to) {
			t.Errorf("reinjected %d messages, want one to all %d recipients in order", len(msgs), len(to))
		}
	})
}

// Only POST is served, and only on /mxdeliv.
func TestMethodsAndPaths(t *testing.T) {
	e := start(t, config{})
	msg := e.sign(encrypted(t))
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, "PATCH"} {
		t.Run(method, func(t *testing.T) {
			e := e.in(t)
			var body []byte
			if method != http.MethodGet && method != http.MethodHead {
				body = msg
			}
			got := e.do(method, mxdeliv.Path, envelope(alice, bob), body)
			want := "405 method not allowed\n"
			if method == http.MethodHead {
				want = ""
			}
			e.expect(got, http.StatusMethodNotAllowed, want)
			if allow := got.header.Values("Allow"); !slices.Equal(allow, []string{"POST"}) {
				t.Errorf("Allow: %q, want POST", allow)
			}
		})
	}
	for _, path := range []string{"/", "/mxdeliv/", "/mxdeliv/x", "/MXDELIV", "/Mxdeliv", "/mxdeliv.php", "//mxdeliv",
		"/metrics", "/healthz", "/index.html"} {
		t.Run(path, func(t *testing.T) {
			e := e.in(t)
			e.expect(e.do(http.MethodPost, path, envelope(alice, bob), msg), http.StatusNotFound, "404 not found\n")
			e.expect(e.do(http.MethodGet, path, nil, nil), http.StatusNotFound, "404 not found\n")
		})
	}
	e.noMail()

	t.Run("query string", func(t *testing.T) {
		e := e.in(t)
		e.expect(e.do(http.MethodPost, mxdeliv.Path+"?x=1", envelope(alice, bob), msg), http.StatusOK, "250 OK")
	})
	t.Run("OPTIONS *", func(t *testing.T) {
		e := e.in(t)
		before := e.statuses()
		c := e.dial()
		c.write("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
		got := c.response()
		e.expect(got, http.StatusNotFound, "404 not found\n")
		e.countedOnce(before, http.StatusNotFound)
	})
}

// A reinjection that cannot reach Postfix is a 4xx: the sender tries
// again, and nothing is lost. The envelope goes to Postfix first, so the
// answer comes before the message is judged.
func TestReinjectionDown(t *testing.T) {
	// Nothing listens on a loopback host of the test's own.
	e := start(t, config{reinject: net.JoinHostPort(testnet.Host(t), "10026")})
	e.expect(e.post(envelope(alice, bob), e.sign(encrypted(t))), http.StatusBadRequest, "451 4.4.1 …")
	if got := e.messagesCounted(metrics.Pass, "encrypted"); got != 0 {
		t.Errorf("pass/encrypted counted %v times, want 0: the message was judged", got)
	}
}

// Postfix's own refusal reaches the sender as Postfix said it.
func TestPostfixRefuses(t *testing.T) {
	e := start(t, config{})
	msg := e.sign(encrypted(t))
	e.sink.SetMode(smtpdtest.TempFail)
	e.expect(e.post(envelope(alice, bob), msg), http.StatusBadRequest, "451 4.3.0 Sink is busy")
	e.sink.SetMode(smtpdtest.PermFail)
	e.expect(e.post(envelope(alice, bob), msg), http.StatusBadRequest, "554 5.7.1 Sink refuses this")
}
