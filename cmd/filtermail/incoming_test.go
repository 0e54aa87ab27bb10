package main

import (
	"bytes"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/internal/dkimtest"
	"filtermail/smtpd/smtpdtest"
)

// The envelope rules of the incoming filter: a bounce sender is taken,
// mail whose envelope sender is not its From address goes on with the
// sender <>, and disabled accounts are dropped from the recipients.
func TestIncomingEnvelope(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "incoming", sink.Port)
	const gone, strict = "gone@chat.example.org", "strict@chat.example.org"
	d.disable(gone)
	d.mark(strict)
	c := dial(t, d)
	v6 := filtertest.GoCryptoV6(t, []byte("hello"))

	fromBob := filtertest.Encrypted(bob, alice, v6)
	wantReply(t, "bounce sender", c.Send("", []string{alice}, fromBob), "250")
	wantReply(t, "forwarder", c.Send("srs0=hash=tt=example.net=bob@forwarder.example.com", []string{alice}, fromBob), "250")
	wantReply(t, "sender is From, case aside", c.Send(strings.ToUpper(bob), []string{alice}, fromBob), "250")
	wantReply(t, "one disabled recipient", c.Send(bob, []string{gone, alice, strict}, fromBob), "250")
	wantReply(t, "only disabled recipients", c.Send(bob, []string{gone}, fromBob), "250")
	// The disabled recipient no longer counts for the encryption rule.
	wantReply(t, "cleartext to disabled strict user", c.Send(bob, []string{gone, alice}, filtertest.Plain(bob, alice, "hi", "hello")), "250")

	wantDelivered(t, sink,
		smtpdtest.Message{From: "", To: []string{alice}, Data: fromBob},
		smtpdtest.Message{From: "", To: []string{alice}, Data: fromBob},
		smtpdtest.Message{From: strings.ToUpper(bob), To: []string{alice}, Data: fromBob},
		smtpdtest.Message{From: bob, To: []string{alice, strict}, Data: fromBob},
		smtpdtest.Message{From: bob, To: []string{alice}, Data: filtertest.Plain(bob, alice, "hi", "hello")})
	d.waitLog(t, "Incoming: dropped (disabled), ", 1)
	d.waitLog(t, "Incoming: 1 of 3 recipients disabled, dropped from the envelope.\n", 1)
	if strings.Contains(d.Log(), "@") {
		t.Errorf("the log holds an address:\n%s", d.Log())
	}
}

// What SMTP smuggling needs is refused in both directions: a bare CR or
// LF, or a message not ending in CRLF. A last line ending in CR CR LF is
// answered at once.
func TestInvalidData(t *testing.T) {
	for _, mode := range []string{"outgoing", "incoming"} {
		t.Run(mode, func(t *testing.T) {
			sink := newSink(t, smtpdtest.Accept)
			d := startDaemon(t, mode, sink.Port, "passthrough_recipients = "+bob)
			c := dial(t, d)
			for name, body := range map[string]string{
				"bare LF":       "From: <" + alice + ">\r\n\nhi\r\n.\r\n",
				"bare CR":       "From: <" + alice + ">\r\n\r\nh\ri\r\n.\r\n",
				"CR CR LF":      "From: <" + alice + ">\r\n\r\nHello!\r\r\n.\r\n",
				"LF dot LF":     "From: <" + alice + ">\r\n\r\nhi\n.\nmore\r\n.\r\n",
				"only CR CR LF": "\r\r\n.\r\n",
				"empty":         ".\r\n",
			} {
				c.Want("MAIL FROM:<"+alice+">", "250")
				c.Want("RCPT TO:<"+bob+">", "250")
				wantReply(t, name, c.RawData(body), "500 Invalid DATA")
			}
			// The session goes on.
			c.Want("MAIL FROM:<"+alice+">", "250")
			c.Want("RCPT TO:<"+bob+">", "250")
			msg := filtertest.Plain(alice, bob, "hi", "hello")
			wantReply(t, "good message after", c.Data(msg), "250")
			wantDelivered(t, sink, smtpdtest.Message{From: alice, To: []string{bob}, Data: msg})
		})
	}
}

// 8BITMIME and SMTPUTF8 are offered, and 8-bit mail, UTF-8 or not, passes
// with its bytes unchanged and its DKIM signature verified.
func TestEightBit(t *testing.T) {
	world := newSenders(t, "example.net")
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemonWith(t, dkimOn, "incoming", sink.Port, world.param())
	c := dial(t, d)
	c.Text.PrintfLine("EHLO client.example.net")
	_, text, err := c.Text.ReadResponse(250)
	if err != nil || !strings.Contains(text, "8BITMIME") || !strings.Contains(text, "SMTPUTF8") {
		t.Errorf("EHLO: %q, %v; want 8BITMIME and SMTPUTF8", text, err)
	}
	latin1 := world.sign(t, "example.net", filtertest.Message(
		"From: <"+bob+">\nTo: <"+alice+">\nSubject: caf\xe9\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit",
		"Gr\xfc\xdfe aus K\xf6ln\n"))
	utf8 := world.sign(t, "example.net", filtertest.Message(
		"From: <"+bob+">\nTo: <"+alice+">\nSubject: café\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit",
		"Grüße aus Köln\n"))
	wantReply(t, "MAIL", c.Cmd("MAIL FROM:<"+bob+"> BODY=8BITMIME"), "250")
	c.Want("RCPT TO:<"+alice+">", "250")
	wantReply(t, "Latin-1", c.Data(latin1), "250")
	wantReply(t, "MAIL", c.Cmd("MAIL FROM:<"+bob+"> BODY=8BITMIME SMTPUTF8"), "250")
	c.Want("RCPT TO:<"+alice+">", "250")
	wantReply(t, "UTF-8", c.Data(utf8), "250")
	wantDelivered(t, sink,
		smtpdtest.Message{From: bob, To: []string{alice}, Data: latin1},
		smtpdtest.Message{From: bob, To: []string{alice}, Data: utf8})
}

// DKIM through the daemon: OpenDKIM's and dkimpy's signatures pass; a
// signature of another domain than the From domain, and mail changed
// after signing, do not; a key that cannot be fetched is a 451.
func TestIncomingDKIM(t *testing.T) {
	world := newSenders(t, "example.net", "other.example", "broken.example")
	world.unreachable("broken.example")
	ed := dkimtest.NewKey(t, dkimtest.Ed25519, "example.net", "ed")
	world.dns.TXT(ed.Name(), ed.TXT())
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemonWith(t, dkimOn, "incoming", sink.Port, world.param())
	c := dial(t, d)
	msg := filtertest.Encrypted(bob, alice, filtertest.GoCryptoV6(t, []byte("hello")))

	byOpenDKIM := world.sign(t, "example.net", msg)
	byDkimpy := dkimtest.SignDkimpy(t, ed, msg, "relaxed/relaxed")
	wantReply(t, "OpenDKIM, RSA", c.Send(bob, []string{alice}, byOpenDKIM), "250")
	wantReply(t, "dkimpy, Ed25519", c.Send(bob, []string{alice}, byDkimpy), "250")
	wantReply(t, "signed by another domain", c.Send(bob, []string{alice}, world.sign(t, "other.example", msg)),
		"554 5.7.1 No valid DKIM signature found")
	wantReply(t, "changed after signing", c.Send(bob, []string{alice}, tamper(byOpenDKIM)),
		"554 5.7.1 No valid DKIM signature found")
	wantReply(t, "not signed", c.Send(bob, []string{alice}, msg), "554 5.7.1 No DKIM signature found")
	// An IP literal has no DNS to look a key up in.
	literal := filtertest.Encrypted("bob@[192.0.2.7]", alice, filtertest.GoCryptoV6(t, []byte("hello")))
	wantReply(t, "IP literal", c.Send("bob@[192.0.2.7]", []string{alice}, literal), "250")
	// A key once found is cached: its lookup failing later changes
	// nothing. A key never found is a temporary failure while DNS fails.
	world.unreachable("example.net")
	wantReply(t, "cached key", c.Send(bob, []string{alice}, byOpenDKIM), "250")
	const dave = "dave@broken.example"
	broken := world.sign(t, "broken.example", filtertest.Encrypted(dave, alice, filtertest.GoCryptoV6(t, []byte("hello"))))
	wantReply(t, "key lookup SERVFAIL", c.Send(dave, []string{alice}, broken), "451 4.7.5")

	wantDelivered(t, sink,
		smtpdtest.Message{From: bob, To: []string{alice}, Data: byOpenDKIM},
		smtpdtest.Message{From: bob, To: []string{alice}, Data: byDkimpy},
		smtpdtest.Message{From: "bob@[192.0.2.7]", To: []string{alice}, Data: literal},
		smtpdtest.Message{From: bob, To: []string{alice}, Data: byOpenDKIM})
	m := d.scrape(t)
	for key, want := range map[string]float64{
		`filtermail_dkim_verifications_total{direction="incoming",result="pass"}`:     3,
		`filtermail_dkim_verifications_total{direction="incoming",result="fail"}`:     2,
		`filtermail_dkim_verifications_total{direction="incoming",result="none"}`:     1,
		`filtermail_dkim_verifications_total{direction="incoming",result="skipped"}`:  1,
		`filtermail_dkim_verifications_total{direction="incoming",result="tempfail"}`: 1,
		`filtermail_dkim_key_lookups_total{direction="incoming",result="tempfail"}`:   1,
		`filtermail_dkim_key_lookups_total{direction="incoming",result="cached"}`:     2,
	} {
		if m[key] != want {
			t.Errorf("%s = %v, want %v", key, m[key], want)
		}
	}
	if lookups := m[`filtermail_dkim_key_lookups_total{direction="incoming",result="unauthenticated"}`] +
		m[`filtermail_dkim_key_lookups_total{direction="incoming",result="cached"}`]; lookups < 3 {
		t.Errorf("%v key lookups found a key, want at least 3", lookups)
	}
	if bytes.Contains([]byte(d.Log()), []byte("@")) {
		t.Errorf("the log holds an address:\n%s", d.Log())
	}
}
