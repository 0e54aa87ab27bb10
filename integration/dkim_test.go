package integration

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/internal/dkimtest"
	"filtermail/smtpd/smtpdtest"
)

// Mail from other relays through the MX service must carry a valid DKIM
// signature of its From domain; filtermail's verdict reaches the client
// through Postfix, and nothing refused is queued.
func TestIncomingDKIMThroughPostfix(t *testing.T) {
	r := startRelay(t)
	markStrict(t, r)
	strict := "strict@" + domain
	c := smtpdtest.Dial(t, r.mx)
	send := func(what, from string, msg []byte, want string) {
		t.Helper()
		c.Want("MAIL FROM:<"+from+">", "250")
		c.Want("RCPT TO:<"+strict+">", "250")
		if got := c.Data(msg); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	encrypted := func(from, text string) []byte {
		return filtertest.Encrypted(from, strict, filtertest.GoCryptoV6(t, []byte(text)))
	}

	signed := r.sign("example.net", encrypted(bob, "signed by example.net"))
	// example.com has a key too, but did not sign.
	forgedFrom := "bob@example.com"
	r.senders.key("example.com")
	forged := forge(signed, bob, forgedFrom)
	if bytes.Equal(forged, signed) {
		t.Fatal("forge changed nothing")
	}
	// A body changed on the way, its encryption still whole.
	tampered := r.sign("example.net", encrypted(bob, "its body is changed after signing"))
	tampered = bytes.Replace(tampered, []byte("version identification"), []byte("version identificatioN"), 1)
	otherSigner := r.sign("example.net", encrypted(forgedFrom, "from example.com, signed by example.net"))
	unsigned := encrypted(bob, "signed by no one")
	r.senders.unreachable("flaky.example")
	flaky := r.sign("flaky.example", encrypted("bob@flaky.example", "its key cannot be fetched"))
	edKey := r.senders.publish(dkimtest.Ed25519, "example.net", "ed")
	ed := dkimtest.SignDkimpy(t, edKey, encrypted(bob, "signed by dkimpy with Ed25519"), "relaxed/relaxed")

	send("From domain replaced after signing", forgedFrom, forged, "554 5.7.1 No valid DKIM signature found")
	send("body changed after signing", bob, tampered, "554 5.7.1 No valid DKIM signature found")
	send("signed by another domain than From's", forgedFrom, otherSigner, "554 5.7.1 No valid DKIM signature found")
	send("unsigned", bob, unsigned, "554 5.7.1 No DKIM signature found")
	send("key lookup SERVFAIL", "bob@flaky.example", flaky, "451 4.7.5")
	send("OpenDKIM, RSA", bob, signed, "250")
	send("dkimpy, Ed25519", bob, ed, "250")

	r.waitMailbox("strict", 2)
	r.waitQueueEmpty()
	got := r.Mailbox("strict")
	if len(got) != 2 {
		t.Errorf("strict has %d messages, want the 2 signed ones", len(got))
	}
	for what, sent := range map[string][]byte{"OpenDKIM, RSA": signed, "dkimpy, Ed25519": ed} {
		i := slices.IndexFunc(got, func(m []byte) bool { return samePayload(m, sent) })
		if i < 0 {
			t.Errorf("%s: not delivered with its payload intact", what)
			continue
		}
		if !r.senders.verifies(got[i], "example.net") {
			t.Errorf("%s: the delivered copy's signature no longer verifies:\n%s", what, got[i])
		}
	}
	for what, sent := range map[string][]byte{"other signer": otherSigner, "body changed": tampered, "unsigned": unsigned, "SERVFAIL": flaky} {
		if slices.ContainsFunc(got, func(m []byte) bool { return samePayload(m, sent) }) {
			t.Errorf("%s: delivered", what)
		}
	}
	// The forged message has the payload of the signed one.
	if slices.ContainsFunc(got, func(m []byte) bool { return bytes.Contains(m, []byte("From: <"+forgedFrom+">")) }) {
		t.Error("forged: delivered")
	}
}
