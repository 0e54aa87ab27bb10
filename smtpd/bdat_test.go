package smtpd

import (
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"filtermail/smtpd/smtpdtest"
)

// go-smtp runs Data on a goroutine of its own for BDAT and resets the
// session while it runs when the client sends RSET, or ends it at QUIT or
// when the connection breaks, even before that goroutine ran: the aborted message never reaches
// Postfix, not even inside another client's, every client hears the
// replies of its own transaction, and nothing panics.
func TestBDATReset(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	s, _, logBuf := startFilter(t, Incoming, sink.Port)
	aborted := "From: <alice@example.net>\r\nTo: <bob@chat.example.org>\r\n" +
		strings.Repeat("X-Aborted: "+strings.Repeat("p", 70)+"\r\n", 3000) + "\r\n"

	var mu sync.Mutex
	sent := map[string]bool{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 8 {
				c, conn := dialServer(t, s)
				exchange(t, c, "EHLO client.test", 250)
				exchange(t, c, "MAIL FROM:<alice@example.net>", 250)
				exchange(t, c, "RCPT TO:<bob@chat.example.org>", 250)
				switch w % 5 {
				case 0: // a chunk, then RSET: the message is not over
					body := aborted + fmt.Sprintf("%d-%d\r\n", w, i)
					fmt.Fprintf(conn, "BDAT %d\r\n%sRSET\r\n", len(body), body)
					readReply(t, c, 250)
					readReply(t, c, 250)
				case 1: // an empty chunk, then RSET at once
					fmt.Fprintf(conn, "BDAT 0\r\nRSET\r\n")
					readReply(t, c, 250)
					readReply(t, c, 250)
				case 2: // an empty chunk, then QUIT at once
					fmt.Fprintf(conn, "BDAT 0\r\nQUIT\r\n")
					readReply(t, c, 250)
					readReply(t, c, 221)
					continue
				case 3: // the last chunk, cut off: it must not pass for whole
					body := fmt.Sprintf("From: <alice@example.net>\r\nTo: <bob@chat.example.org>\r\n\r\ncut off %d-%d\r\n", w, i)
					fmt.Fprintf(conn, "BDAT %d LAST\r\n%s", len(body)+100, body)
					conn.(*net.TCPConn).CloseWrite()
					readReply(t, c, 421)
					continue
				default:
					body := "From: <alice@example.net>\r\nTo: <bob@chat.example.org>\r\n\r\n" +
						strings.Repeat(fmt.Sprintf("sent whole %d-%d\r\n", w, i), 20000)
					mu.Lock()
					sent[body] = true
					mu.Unlock()
					fmt.Fprintf(conn, "BDAT %d LAST\r\n%s", len(body), body)
					readReply(t, c, 250)
				}
				exchange(t, c, "NOOP", 250)
				exchange(t, c, "QUIT", 221)
			}
		})
	}
	wg.Wait()
	got := sink.Messages()
	for _, m := range got {
		if !sent[string(m.Data)] {
			t.Errorf("Postfix got a message no client sent whole: %d bytes, aborted bytes in it: %v",
				len(m.Data), strings.Contains(string(m.Data), "X-Aborted"))
		}
	}
	if len(got) != len(sent) {
		t.Errorf("Postfix got %d messages, %d were sent whole", len(got), len(sent))
	}
	if strings.Contains(logBuf.String(), "panic") {
		t.Errorf("a panic was logged:\n%s", logBuf.String())
	}
}

// readReply reads a reply with code, or fails the test.
func readReply(t *testing.T, c *textproto.Conn, code int) {
	t.Helper()
	if _, msg, err := c.ReadResponse(code); err != nil {
		t.Errorf("reply: %v %s", err, msg)
	}
}
