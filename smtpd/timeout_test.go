package smtpd

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// The read timeout bounds each read, not the whole body: a sender slower
// than the timeout in all, but never quiet that long and faster than the
// minimum rate, is served; one that goes quiet inside DATA or a BDAT
// chunk, or dribbles below the rate, gets a temporary reply that names no
// address.
func TestBodyReadTimeout(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	const idle = 500 * time.Millisecond
	s, _, _ := startFilterIdle(t, Outgoing, sink.Port, idle)
	s.ln.minRate = 100 // bytes per second; the slow sender sends 3 times that
	from, to := "alice@chat.example.org", "bob@example.net"
	msg := filtertest.Encrypted(from, to, filtertest.GoCryptoV6(t, []byte("slow")))

	c := smtpdtest.Dial(t, s.ln.Addr().String())
	c.Want("MAIL FROM:<"+from+">", "250")
	c.Want("RCPT TO:<"+to+">", "250")
	c.Want("DATA", "354")
	// Four times the timeout in all, in pieces a fifth of it apart.
	const pieces = 20
	for i := range pieces {
		part := msg[i*len(msg)/pieces : (i+1)*len(msg)/pieces]
		if _, err := c.Conn.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(idle / 5)
	}
	c.Conn.Write([]byte(".\r\n"))
	if reply := c.Reply(); !strings.HasPrefix(reply, "250") {
		t.Errorf("a slow sender: %q, want 250", reply)
	}

	c = smtpdtest.Dial(t, s.ln.Addr().String())
	c.Want("MAIL FROM:<"+from+">", "250")
	c.Want("RCPT TO:<"+to+">", "250")
	c.Want("DATA", "354")
	c.Conn.Write(msg[:len(msg)/2])
	start := time.Now()
	reply := c.Reply()
	if !strings.HasPrefix(reply, "421 4.4.2") || strings.Contains(reply, "127.0.0.1") {
		t.Errorf("a sender quiet inside DATA: %q, want 421 4.4.2 without an address", reply)
	}
	if d := time.Since(start); d > 10*idle {
		t.Errorf("answered after %v", d)
	}
	if n := len(sink.Messages()); n != 1 {
		t.Errorf("the sink has %d messages, want the slow sender's", n)
	}

	// The same inside a BDAT chunk.
	c = smtpdtest.Dial(t, s.ln.Addr().String())
	c.Want("MAIL FROM:<"+from+">", "250")
	c.Want("RCPT TO:<"+to+">", "250")
	fmt.Fprintf(c.Conn, "BDAT %d LAST\r\n%s", len(msg), msg[:len(msg)/2])
	if reply := c.Reply(); !strings.HasPrefix(reply, "421 4.4.2") || strings.Contains(reply, "127.0.0.1") {
		t.Errorf("a sender quiet inside a BDAT chunk: %q, want 421 4.4.2 without an address", reply)
	}
	if n := len(sink.Messages()); n != 1 {
		t.Errorf("the sink has %d messages, want the slow sender's", n)
	}

	// A byte every tenth of the timeout: never quiet for long, but a
	// tenth of the minimum rate.
	c = smtpdtest.Dial(t, s.ln.Addr().String())
	c.Want("MAIL FROM:<"+from+">", "250")
	c.Want("RCPT TO:<"+to+">", "250")
	c.Want("DATA", "354")
	start = time.Now()
	done := make(chan string, 1)
	go func() { done <- c.Reply() }()
	for i := 0; ; i++ {
		select {
		case reply := <-done:
			if !strings.HasPrefix(reply, "421 4.4.2") {
				t.Errorf("a sender below the minimum rate: %q, want 421 4.4.2", reply)
			}
			return
		case <-time.After(idle / 10):
		}
		if _, err := c.Conn.Write(msg[i%len(msg) : i%len(msg)+1]); err != nil || time.Since(start) > 20*idle {
			t.Fatalf("a sender below the minimum rate is not cut off (%v)", err)
		}
	}
}
