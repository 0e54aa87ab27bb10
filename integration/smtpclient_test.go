package integration

import (
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// smtpClient is a raw SMTP client that checks each reply's text.
type smtpClient struct {
	t    *testing.T
	conn net.Conn
	text *textproto.Conn
}

func dialSMTP(t *testing.T, port int) *smtpClient {
	t.Helper()
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	c := &smtpClient{t: t, conn: conn, text: textproto.NewConn(conn)}
	t.Cleanup(func() { c.text.Close() })
	if got := c.reply(); !strings.HasPrefix(got, "220") {
		t.Fatalf("greeting %q", got)
	}
	c.want("EHLO client.test", "250")
	return c
}

func (c *smtpClient) reply() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(120 * time.Second))
	code, msg, err := c.text.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatalf("reading reply: %v", err)
	}
	lines := strings.Split(msg, "\n")
	return strconv.Itoa(code) + " " + lines[len(lines)-1]
}

// cmd sends a command and returns the reply.
func (c *smtpClient) cmd(line string) string {
	c.t.Helper()
	if err := c.text.PrintfLine("%s", line); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

// want sends a command and fails unless the reply starts with want.
func (c *smtpClient) want(line, want string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, want) {
		c.t.Errorf("%s: reply %q, want %q", line, got, want)
	}
	return got
}

// wantData sends DATA and msg, and checks the reply at its end.
func (c *smtpClient) wantData(msg []byte, want string) string {
	c.t.Helper()
	if got := c.cmd("DATA"); !strings.HasPrefix(got, "354") {
		c.t.Errorf("DATA: reply %q", got)
		return got
	}
	w := c.text.DotWriter()
	w.Write(msg)
	w.Close()
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Errorf("end of data: reply %q, want %q", got, want)
	}
	return got
}
