package transport

import (
	"net"
	"strings"
	"testing"
	"time"
)

// readReplyFrom reads one reply from the bytes a server sent.
func readReplyFrom(data []byte) (*serverReply, error) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		server.SetWriteDeadline(time.Now().Add(time.Second))
		server.Write(data)
		server.Close()
	}()
	c := newSMTPConn(client)
	return c.readReply(time.Second)
}

// Replies of another relay's SMTP server: whatever it sends, the result
// is a reply with a code from 200 to 599 and text on lines of bounded
// length, or an error.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 OK\r\n",
		"250-mx.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
		"550-5.1.1 first\r\n550 5.1.1 second\r\n",
		"451-4.3.0 a\r\n452 4.3.0 b\r\n",
		"220\r\n",
		"2500 x\r\n",
		"abc\r\n",
		strings.Repeat("250-x\r\n", 120) + "250 y\r\n",
		"250 " + strings.Repeat("x", 5000) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := readReplyFrom(data)
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 {
			t.Errorf("code %d", r.Code)
		}
		if len(r.Message) > len(data) {
			t.Errorf("text of %d bytes from %d bytes", len(r.Message), len(data))
		}
		// What reaches Postfix is one line.
		out := remoteReply(r.Code, r.EnhancedCode, r.Message, SMTP)
		if strings.ContainsAny(out.Message, "\r\n") || out.Code < 200 || out.Code > 599 || out.Code == 421 {
			t.Errorf("passed on as %d %q", out.Code, out.Message)
		}
	})
}

// The SMTP reply in a /mxdeliv response body, whatever it holds.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"250 OK", "554 5.7.1 No DKIM signature found", "451 4.7.5 x", "5.7.1", "99 x", "600 x", "250 9.9.9 x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		code, enhanced, text, ok := parseReply(line)
		if !ok {
			return
		}
		if code < 200 || code > 599 || len(text) > len(line) {
			t.Errorf("parseReply(%q) = %d %v %q", line, code, enhanced, text)
		}
		out := remoteReply(code, enhanced, text, HTTPS)
		if strings.ContainsAny(out.Message, "\r\n") || out.EnhancedCode[0] != out.Code/100 {
			t.Errorf("passed on as %d %v %q", out.Code, out.EnhancedCode, out.Message)
		}
	})
}
