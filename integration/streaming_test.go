package integration

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// A message streams into Postfix's reinjection smtpd while filtermail
// judges it, and Postfix queues it only when it passed: with CHUNKING, as
// Postfix offers it, the body goes in BDAT chunks and a refused message
// is discarded with RSET; without, in DATA, and the connection is closed
// before the final dot. Both ways, the message that passes arrives once
// with its bytes unchanged, and the one refused at its very end (its
// third part comes after 3 MB of payload) is answered 523, after
// Postfix got its body, and never queued.
func TestStreamingThroughPostfix(t *testing.T) {
	payload := make([]byte, 3<<20)
	rand.Read(payload)
	for _, tt := range []struct {
		name     string
		chunking bool
	}{{"BDAT", true}, {"DATA", false}} {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelayWith(t, func(s service) service {
				if s.Name == reinjectService && !tt.chunking {
					s = withOptions(s, "smtpd_discard_ehlo_keywords=chunking")
				}
				return s
			})
			armored := filtertest.GoCryptoV6(t, payload)
			good := filtertest.Encrypted(alice, bob, armored)
			late := bytes.Replace(filtertest.Encrypted(alice, bob, armored), []byte("\r\n--b1--"),
				[]byte("\r\n--b1\r\nContent-Type: text/plain\r\n\r\na third part\r\n--b1--"), 1)
			if bytes.Equal(late, good) {
				t.Fatal("no third part added")
			}

			c := smtpdtest.Dial(t, r.submission)
			if got := c.Send(alice, []string{bob}, good); !strings.HasPrefix(got, "250") {
				t.Fatalf("encrypted: %q", got)
			}
			if got := c.Send(alice, []string{bob}, late); !strings.HasPrefix(got, "523") {
				t.Errorf("a third part: %q, want 523", got)
			}
			c.Cmd("QUIT")
			got := r.waitSink(1)
			r.waitQueueEmpty()
			time.Sleep(time.Second) // anything queued would arrive by now
			if got = r.sink.Messages(); len(got) != 1 || !samePayload(got[0].Data, good) {
				t.Fatalf("the internet got %d messages, want the encrypted one once", len(got))
			}
			// The reinjection smtpd got both bodies: both transactions
			// reached the body, and only one was committed.
			r.outgoing.Stop() // closes the connections it keeps
			log := reinjectLog(t, r)
			t.Logf("reinjection smtpd:\n%s", log)
			if tt.chunking {
				if !strings.Contains(log, "mail=2 rcpt=2 bdat=") || !strings.Contains(log, "rset=1") {
					t.Errorf("no BDAT transaction ended by RSET in the reinjection smtpd's log")
				}
			} else if !strings.Contains(log, "lost connection after DATA") {
				t.Errorf("no DATA transaction cut off before its end in the reinjection smtpd's log")
			}
		})
	}
}

// reinjectLog returns the lines of Postfix's log that tell how smtpd
// connections ended, once the reinjection smtpd's has (it is the one
// that saw BDAT or lost its connection in DATA).
func reinjectLog(t *testing.T, r *relay) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var lines []string
		for line := range strings.Lines(r.Log()) {
			if strings.Contains(line, "disconnect from") || strings.Contains(line, "lost connection") {
				lines = append(lines, line)
			}
		}
		log := strings.Join(lines, "")
		if strings.Contains(log, "bdat=") || strings.Contains(log, "after DATA") || time.Now().After(deadline) {
			return log
		}
	}
}
