package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filtermail/filter/filtertest"
	"filtermail/internal/daemontest"
	"filtermail/internal/testnet"
	"filtermail/smtpd/smtpdtest"
)

const (
	alice = "alice@" + domain
	bob   = "bob@example.net" // on the internet: the sink
	carol = "carol@" + domain
)

// relay is Postfix with filtermail in both of a relay's places, the way
// relays wire them (README.md's master.cf): the submission service and
// the MX service pass each transaction to filtermail
// (smtpd_proxy_filter), which reinjects what passes into two plain smtpd
// services with maxproc 100. Everything runs on a loopback host of the
// test's own, filtermail on its default ports.
//
// The incoming filter checks DKIM, as on a relay: it looks keys up in the
// DNS server of senders, where the test publishes the keys of the domains
// its incoming mail is signed by.
type relay struct {
	*postfix
	sink                   *smtpdtest.Sink
	senders                *senders
	submission, mx, aqueue string // Postfix's addresses for clients
	outgoing, incoming     *daemontest.Daemon
}

// reinjectService is the name of the outgoing reinjection service in
// README.md's master.cf.
const reinjectService = "127.0.0.1:10025"

func startRelay(t testing.TB, params ...string) *relay {
	t.Helper()
	return startRelayWith(t, nil, params...)
}

// startRelayWith is startRelay with each of README.md's services passed
// through edit first, if it is not nil.
func startRelayWith(t testing.TB, edit func(service) service, params ...string) *relay {
	t.Helper()
	return startRelayServices(t, func(services []service) []service {
		for i := range services {
			if edit != nil {
				services[i] = edit(services[i])
			}
		}
		return services
	}, params...)
}

// startRelayServices is startRelay with master.cf's services those that
// edit makes of README.md's: it may change, add and remove services.
func startRelayServices(t testing.TB, edit func([]service) []service, params ...string) *relay {
	t.Helper()
	host := testnet.Host(t)
	r := &relay{sink: smtpdtest.NewSink(t, smtpdtest.Accept), senders: newSenders(t)}
	services := edit(readmeServices(t, host))
	r.postfix = startPostfix(t, postfixConfig{
		Host:      host,
		SinkPort:  r.sink.Port,
		Mailboxes: []string{"alice", "carol", "strict", "echo", "dora"},
		Services:  services,
	})
	r.submission, r.mx, r.aqueue = r.Addr("submission"), r.Addr("smtp"), r.Addr("588")
	o := daemontest.Options{Params: append([]string{
		"mail_domain = " + domain,
		"mailboxes_dir = " + r.mailDir,
		"filtermail_host = " + host,
		"postfix_host = " + host,
		r.senders.param(),
	}, params...)}
	// DKIM is checked unless FILTERMAIL_SKIP_DKIM is set to something.
	o.Env = []string{"FILTERMAIL_SKIP_DKIM="}
	o.Mode = "outgoing"
	r.outgoing = daemontest.Start(t, binary, o)
	o.Mode = "incoming"
	r.incoming = daemontest.Start(t, binary, o)
	if strings.Contains(r.incoming.Log(), "DKIM verification DISABLED") {
		t.Fatal("the incoming filter runs without DKIM")
	}
	return r
}

// sign returns msg signed as the relay of domain signs: OpenDKIM,
// relaxed/relaxed, RSA-2048, its key published.
func (r *relay) sign(domain string, msg []byte) []byte {
	r.t.Helper()
	return r.senders.sign(domain, msg)
}

func TestOutgoingBeforeQueue(t *testing.T) {
	r := startRelay(t, "passthrough_recipients = echo@"+domain)
	c := smtpdtest.Dial(t, r.submission)

	// Encrypted, with every DSN parameter, to a local user and to the
	// internet.
	encrypted := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("hello through Postfix")))
	c.Want("MAIL FROM:<"+alice+"> RET=HDRS ENVID=QQ314159", "250")
	c.Want("RCPT TO:<"+carol+"> NOTIFY=SUCCESS,DELAY,FAILURE ORCPT=rfc822;"+carol, "250")
	c.Want("RCPT TO:<"+bob+"> NOTIFY=FAILURE ORCPT=rfc822;"+bob, "250")
	c.WantData(encrypted, "250")

	// Cleartext is refused at the end of DATA and never queued.
	cleartext := filtertest.Plain(alice, bob, "hi", "secret words")
	c.Want("MAIL FROM:<"+alice+">", "250")
	c.Want("RCPT TO:<"+bob+">", "250")
	if got := c.WantData(cleartext, "523"); !strings.Contains(got, "Encryption Needed: Invalid Unencrypted Mail") {
		t.Errorf("cleartext: %q", got)
	}

	// Cleartext to a passthrough recipient goes through.
	toEcho := filtertest.Plain(alice, "echo@"+domain, "hi", "echo me")
	c.Want("MAIL FROM:<"+alice+">", "250")
	c.Want("RCPT TO:<echo@"+domain+">", "250")
	c.WantData(toEcho, "250")

	got := r.waitMailbox("carol", 1)
	if !samePayload(got[0], encrypted) {
		t.Errorf("carol's copy lost its encrypted payload:\n%s", got[0])
	}
	if msgs := r.waitSink(1); !samePayload(msgs[0].Data, encrypted) || msgs[0].From != alice {
		t.Errorf("the internet's copy: from %s, payload intact %v", msgs[0].From, samePayload(msgs[0].Data, encrypted))
	}
	if got := r.waitMailbox("echo", 1); !bytes.Contains(got[0], []byte("echo me")) {
		t.Error("echo's message is wrong")
	}
	time.Sleep(500 * time.Millisecond)
	for _, m := range r.sink.Messages() {
		if bytes.Contains(m.Data, []byte("secret words")) {
			t.Error("the refused cleartext reached the internet")
		}
	}
	if strings.Contains(r.Log(), "secret words") || !r.QueueEmpty() {
		t.Error("the refused message was queued")
	}
}

// samePayload reports whether got holds sent's armored OpenPGP message
// unchanged; maildirs store lines with LF, SMTP with CRLF.
func samePayload(got, sent []byte) bool {
	lf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }
	sent = lf(sent)
	i := bytes.Index(sent, []byte("-----BEGIN PGP MESSAGE-----"))
	j := bytes.Index(sent, []byte("-----END PGP MESSAGE-----"))
	if i < 0 || j < i {
		return false
	}
	return bytes.Contains(lf(got), sent[i:j])
}

func (r *relay) waitSink(n int) []smtpdtest.Message {
	r.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		msgs := r.sink.Messages()
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the sink has %d messages, want %d", len(msgs), n)
		}
	}
}

// The rate limit's 450 reaches the client through Postfix, at MAIL FROM.
func TestOutgoingRateLimitThroughPostfix(t *testing.T) {
	r := startRelay(t, "max_user_send_per_minute = 1", "max_user_send_burst_size = 2")
	msg := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV4(t, []byte("hi")))
	c := smtpdtest.Dial(t, r.submission)
	for range 2 {
		c.Want("MAIL FROM:<"+alice+">", "250")
		c.Want("RCPT TO:<"+bob+">", "250")
		c.WantData(msg, "250")
	}
	// Postfix connects to the filter when the first recipient is
	// accepted, and passes MAIL FROM on then; filtermail's answer to it
	// comes back as the answer to RCPT.
	c.Want("MAIL FROM:<"+alice+">", "250")
	got := c.Cmd("RCPT TO:<" + bob + ">")
	if !strings.HasPrefix(got, "450") || !strings.Contains(got, "Too much mail from <"+alice+">") {
		t.Errorf("third message: %q, want filtermail's 450", got)
	}
	r.waitSink(2)
}

// Before-queue on the MX service, with filtermail incoming. The mail is
// signed by its sender's relay, as all mail from other relays is.
func TestIncomingBeforeQueue(t *testing.T) {
	r := startRelay(t)
	strict := "strict@" + domain
	markStrict(t, r)
	c := smtpdtest.Dial(t, r.mx)

	encrypted := r.sign("example.net", filtertest.Encrypted(bob, strict, filtertest.GoCryptoV6(t, []byte("for strict"))))
	c.Want("MAIL FROM:<"+bob+">", "250")
	c.Want("RCPT TO:<"+strict+">", "250")
	c.WantData(encrypted, "250")

	cleartext := r.sign("example.net", filtertest.Plain(bob, strict, "hi", "plain words for strict"))
	c.Want("MAIL FROM:<"+bob+">", "250")
	c.Want("RCPT TO:<"+strict+">", "250")
	if got := c.WantData(cleartext, "523"); !strings.Contains(got, "Encryption Needed") {
		t.Errorf("cleartext to strict: %q", got)
	}

	toCarol := r.sign("example.net", filtertest.Plain(bob, carol, "hi", "plain words for carol"))
	c.Want("MAIL FROM:<"+bob+">", "250")
	c.Want("RCPT TO:<"+carol+">", "250")
	c.WantData(toCarol, "250")

	report := r.sign("example.net", filtertest.Message(
		"From: MAILER-DAEMON@example.net\r\nTo: "+strict+"\r\nSubject: Undelivered Mail\r\nAuto-Submitted: auto-replied\r\n"+
			"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b1\r\n",
		"--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n--b1\r\n"+
			"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; example.net\r\n\r\nFinal-Recipient: rfc822; x@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n--b1--\r\n"))
	c.Want("MAIL FROM:<>", "250")
	c.Want("RCPT TO:<"+strict+">", "250")
	c.WantData(report, "250")

	got := r.waitMailbox("strict", 2)
	if !slices.ContainsFunc(got, func(m []byte) bool { return samePayload(m, encrypted) }) {
		t.Error("strict's encrypted message lost its payload")
	}
	if !slices.ContainsFunc(got, func(m []byte) bool { return bytes.Contains(m, []byte("Your message could not be delivered.")) }) {
		t.Error("the delivery report did not arrive")
	}
	if got := r.waitMailbox("carol", 1); !bytes.Contains(got[0], []byte("plain words for carol")) {
		t.Error("carol's cleartext did not arrive")
	}
	time.Sleep(300 * time.Millisecond)
	if len(r.Mailbox("strict")) != 2 || !r.QueueEmpty() {
		t.Error("the refused cleartext was delivered or queued")
	}
}

// markStrict gives strict@ the marker that refuses incoming cleartext; the
// maildir's folder is Postfix's, the marker is read by filtermail.
func markStrict(t *testing.T, r *relay) {
	t.Helper()
	dir := filepath.Join(r.mailDir, "strict@"+domain)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "enforceE2EEincoming"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Two relays run at once, each on its own loopback host with the same
// default ports, and neither sees the other's mail: tests can never meet
// on a port.
func TestTwoRelaysAtOnce(t *testing.T) {
	relays := []*relay{startRelay(t), startRelay(t)}
	if relays[0].Host == relays[1].Host {
		t.Fatalf("both relays on %s", relays[0].Host)
	}
	for i, r := range relays {
		msg := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte(fmt.Sprintf("through relay %d", i))))
		if got := smtpdtest.Dial(t, r.submission).Send(alice, []string{bob}, msg); !strings.HasPrefix(got, "250") {
			t.Fatalf("relay %d: %q", i, got)
		}
		if got := r.waitSink(1); !samePayload(got[0].Data, msg) {
			t.Errorf("relay %d's sink got another message", i)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for i, r := range relays {
		if n := len(r.sink.Messages()); n != 1 {
			t.Errorf("relay %d's sink has %d messages", i, n)
		}
	}
}
