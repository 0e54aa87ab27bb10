package integration

import (
	"strings"
	"testing"
	"time"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// With filtermail stopped, Postfix tells the client to try again, and
// nothing is queued.
func TestFiltermailDownThroughPostfix(t *testing.T) {
	r := startRelay(t)
	r.outgoing.Stop()
	c := smtpdtest.Dial(t, r.submission)
	msg := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("while the filter is down")))
	got := c.Send(alice, []string{bob}, msg)
	t.Logf("filter down, the client got: %s", got)
	if !strings.HasPrefix(got, "4") {
		t.Errorf("filter down: %q, want a temporary error", got)
	}
	time.Sleep(500 * time.Millisecond)
	if !r.QueueEmpty() || len(r.sink.Messages()) != 0 {
		t.Error("a message was queued or sent without the filter")
	}
}

// With Postfix's reinjection service stopped, filtermail answers 451, and
// Postfix passes that on; once it is back, the same message goes through,
// once.
func TestReinjectionDownThroughPostfix(t *testing.T) {
	r := startRelay(t)
	r.setService(reinjectService, false)
	msg := filtermailMessage(t)
	c := smtpdtest.Dial(t, r.submission)
	got := c.Send(alice, []string{bob}, msg)
	t.Logf("reinjection down, the client got: %s", got)
	if !strings.HasPrefix(got, "451") || !strings.Contains(got, "try again later") {
		t.Errorf("reinjection down: %q, want filtermail's 451", got)
	}
	r.setService(reinjectService, true)
	c = smtpdtest.Dial(t, r.submission)
	if got := c.Send(alice, []string{bob}, msg); !strings.HasPrefix(got, "250") {
		t.Errorf("retry: %q", got)
	}
	if got := r.waitSink(1); len(got) != 1 || !samePayload(got[0].Data, msg) {
		t.Errorf("the internet got %d messages", len(got))
	}
}

func filtermailMessage(t *testing.T) []byte {
	return filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("retried")))
}
