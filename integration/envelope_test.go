package integration

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// Through the MX service, the envelope that filtermail hands to Postfix:
// forwarded mail (envelope sender not the From address) and bounces go on
// with the sender <>, and disabled accounts are dropped from the
// recipients.
func TestIncomingEnvelopeThroughPostfix(t *testing.T) {
	r := startRelay(t)
	markStrict(t, r)
	markDisabled(t, r, "dora")
	strict, dora := "strict@"+domain, "dora@"+domain
	c := smtpdtest.Dial(t, r.mx)
	send := func(what, from string, to []string, msg []byte) {
		t.Helper()
		if got := c.Send(from, to, msg); !strings.HasPrefix(got, "250") {
			t.Errorf("%s: %q, want 250", what, got)
		}
	}
	encrypted := func(to, text string) []byte {
		return filtertest.Encrypted(bob, to, filtertest.GoCryptoV6(t, []byte(text)))
	}

	// Forwarded by a host that rewrites the sender (SRS); bob's relay
	// signed it.
	srs := "SRS0=HHH1=TT=example.net=bob@forwarder.example"
	forwarded := r.sign("example.net", encrypted(carol, "forwarded to carol"))
	send("forwarded", srs, []string{carol}, forwarded)

	// A bounce from bob's relay.
	report := r.sign("example.net", filtertest.Message(
		"From: MAILER-DAEMON@example.net\nTo: "+strict+"\nSubject: Undelivered Mail\nAuto-Submitted: auto-replied\n"+
			"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=b1",
		"--b1\nContent-Type: text/plain\n\nA report with the sender <>.\n--b1\n"+
			"Content-Type: message/delivery-status\n\nReporting-MTA: dns; example.net\n\nFinal-Recipient: rfc822; x@example.net\nAction: failed\nStatus: 5.1.1\n--b1--\n"))
	send("delivery report", "", []string{strict}, report)

	// To one active and one disabled account; then to the disabled one
	// alone, which is taken and dropped.
	toBoth := r.sign("example.net", encrypted(carol, "to carol and dora"))
	send("one recipient disabled", bob, []string{carol, dora}, toBoth)
	toDora := r.sign("example.net", encrypted(dora, "to dora alone"))
	send("every recipient disabled", bob, []string{dora}, toDora)

	r.waitMailbox("carol", 2)
	r.waitMailbox("strict", 1)
	r.waitQueueEmpty()
	carols := r.Mailbox("carol")
	if len(carols) != 2 {
		t.Errorf("carol has %d messages, want 2", len(carols))
	}
	check := func(what string, msgs [][]byte, match func([]byte) bool, returnPath string) {
		t.Helper()
		i := slices.IndexFunc(msgs, match)
		if i < 0 {
			t.Errorf("%s: not delivered", what)
			return
		}
		if got := header(msgs[i], "Return-Path"); got != returnPath {
			t.Errorf("%s: Return-Path %q, want %q", what, got, returnPath)
		}
		if !r.senders.verifies(msgs[i], "example.net") {
			t.Errorf("%s: the delivered copy's signature no longer verifies", what)
		}
	}
	check("forwarded", carols, func(m []byte) bool { return samePayload(m, forwarded) }, "<>")
	check("one recipient disabled", carols, func(m []byte) bool { return samePayload(m, toBoth) }, "<"+bob+">")
	stricts := r.Mailbox("strict")
	if len(stricts) != 1 {
		t.Errorf("strict has %d messages, want 1", len(stricts))
	}
	check("delivery report", stricts, func(m []byte) bool {
		return bytes.Contains(m, []byte("A report with the sender <>."))
	}, "<>")
	if n := len(r.Mailbox("dora")); n != 0 {
		t.Errorf("disabled dora has %d messages", n)
	}
}

// header returns the first value of the header field name in msg, as
// the maildir has it (lines ended with LF), or "" if there is none.
func header(msg []byte, name string) string {
	head, _, _ := bytes.Cut(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), []byte("\n\n"))
	for _, line := range strings.Split(string(head), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
