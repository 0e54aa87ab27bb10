package transport_test

import (
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// lmtpText connects a plain text client to the transport and says LHLO;
// it returns the lines of the LHLO reply.
func (w *world) lmtpText() (*textproto.Conn, net.Conn, string) {
	w.t.Helper()
	conn, err := net.Dial("tcp", w.lmtp)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := textproto.NewConn(conn)
	if _, _, err := c.ReadResponse(220); err != nil {
		w.t.Fatal(err)
	}
	if err := c.PrintfLine("LHLO postfix.relay.example"); err != nil {
		w.t.Fatal(err)
	}
	_, lhlo, err := c.ReadResponse(250)
	if err != nil {
		w.t.Fatal(err)
	}
	return c, conn, lhlo
}

// want sends line, unless empty, and reads a reply that must have code.
func want(t *testing.T, c *textproto.Conn, line string, code int) string {
	t.Helper()
	if line != "" {
		if err := c.PrintfLine("%s", line); err != nil {
			t.Fatal(err)
		}
	}
	_, msg, err := c.ReadResponse(code)
	if err != nil {
		t.Errorf("%s: %v %s", line, err, msg)
	}
	return msg
}

// Postfix's LMTP client never sends BDAT, and the transport does not offer
// CHUNKING. A BDAT gets 502 once its chunk is read past (never taken for
// commands); BDAT 0 and QUIT at once, which go-smtp would let end the
// session before the goroutine it runs a BDAT message on, leaves nothing
// behind; a DATA afterwards is delivered.
func TestBDATRefused(t *testing.T) {
	w := newWorld(t)
	r := w.relay("other.example")
	c, conn, lhlo := w.lmtpText()
	if strings.Contains(lhlo, "CHUNKING") {
		t.Errorf("LHLO offers CHUNKING:\n%s", lhlo)
	}
	want(t, c, "MAIL FROM:<"+alice+">", 250)
	want(t, c, "RCPT TO:<"+bob+">", 250)
	fmt.Fprintf(conn, "BDAT 12\r\nRSET\r\nNOOP\r\nNOOP\r\n")
	want(t, c, "", 502)
	want(t, c, "", 250) // the NOOP after the chunk
	want(t, c, "BDAT x", 501)
	fmt.Fprintf(conn, "bdat 3 LAST\r\nABC")
	want(t, c, "", 502)
	want(t, c, "DATA", 354)
	msg := message(alice, bob)
	fmt.Fprintf(conn, "%s.\r\n", bytes.ReplaceAll([]byte(msg), []byte("\r\n."), []byte("\r\n..")))
	if got := want(t, c, "", 250); !strings.Contains(got, "HTTPS") {
		t.Errorf("DATA after the refused BDATs: %q", got)
	}
	want(t, c, "QUIT", 221)
	if reqs := r.https.Requests(); len(reqs) != 1 || string(reqs[0].Body) != msg {
		t.Errorf("the relay got %d messages, want the one sent with DATA", len(reqs))
	}

	for range 20 {
		c, conn, _ := w.lmtpText()
		want(t, c, "MAIL FROM:<"+alice+">", 250)
		want(t, c, "RCPT TO:<"+bob+">", 250)
		fmt.Fprintf(conn, "BDAT 0\r\nQUIT\r\n")
		want(t, c, "", 502)
		want(t, c, "", 221)
	}
	// A BDAT line too long to be looked at whole is refused as too long.
	for range 20 {
		c, conn, _ := w.lmtpText()
		want(t, c, "MAIL FROM:<"+alice+">", 250)
		want(t, c, "RCPT TO:<"+bob+">", 250)
		fmt.Fprintf(conn, "BDAT%s0\r\nQUIT\r\n", strings.Repeat(" ", 5000))
		want(t, c, "", 500)
	}
	w.tr.Shutdown(t.Context())
	if strings.Contains(w.log.String(), "panic") {
		t.Errorf("a panic was logged:\n%.2000s", w.log.String())
	}
}
