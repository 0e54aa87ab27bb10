package integration

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// filtermail as an after-queue content_filter hop: Postfix queues first,
// hands each message to filtermail, and filtermail reinjects what passes.
// What filtermail refuses, Postfix bounces to the sender.
func TestAfterQueue(t *testing.T) {
	r := startRelay(t)
	c := smtpdtest.Dial(t, r.aqueue)

	encrypted := filtertest.Encrypted(alice, carol, filtertest.GoCryptoV6(t, []byte("after the queue")))
	c.Want("MAIL FROM:<"+alice+">", "250")
	c.Want("RCPT TO:<"+carol+">", "250")
	c.Want("RCPT TO:<"+bob+">", "250")
	c.WantData(encrypted, "250") // queued by Postfix

	cleartext := filtertest.Plain(alice, bob, "hi", "cleartext after the queue")
	c.Want("MAIL FROM:<"+alice+">", "250")
	c.Want("RCPT TO:<"+bob+">", "250")
	c.WantData(cleartext, "250") // queued too: the verdict comes later

	if got := r.waitMailbox("carol", 1); !samePayload(got[0], encrypted) {
		t.Error("carol's copy lost its payload")
	}
	if got := r.waitSink(1); !samePayload(got[0].Data, encrypted) {
		t.Error("the internet's copy lost its payload")
	}
	bounce := r.waitMailbox("alice", 1)[0]
	for _, want := range []string{"MAILER-DAEMON", "Encryption Needed", "cleartext after the queue"} {
		if !bytes.Contains(bounce, []byte(want)) {
			t.Errorf("bounce to alice lacks %q:\n%s", want, bounce)
		}
	}
	// Nothing is lost and nothing arrives twice.
	time.Sleep(time.Second)
	if n := len(r.Mailbox("carol")); n != 1 {
		t.Errorf("carol has %d copies", n)
	}
	for _, m := range r.sink.Messages() {
		if bytes.Contains(m.Data, []byte("cleartext after the queue")) && !strings.Contains(string(m.Data), "MAILER-DAEMON") {
			t.Error("the refused cleartext reached the internet")
		}
	}
	if len(r.sink.Messages()) != 1 || !r.QueueEmpty() {
		t.Errorf("sink has %d messages, queue empty %v", len(r.sink.Messages()), r.QueueEmpty())
	}
}
