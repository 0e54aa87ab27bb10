package smtpdtest

import (
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client is a raw SMTP client for tests: it sends command lines as they
// are written and returns each reply as "code text", the text being the
// reply's last line.
type Client struct {
	t    testing.TB
	Conn net.Conn
	Text *textproto.Conn
}

// Dial opens an SMTP session with the server at addr (host:port), reads
// its greeting and says EHLO.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{t: t, Conn: conn, Text: textproto.NewConn(conn)}
	t.Cleanup(func() { c.Text.Close() })
	if reply := c.Reply(); !strings.HasPrefix(reply, "220 ") {
		t.Fatalf("greeting %q", reply)
	}
	c.Cmd("EHLO client.test")
	return c
}

// Reply reads one reply. Waiting for it is bounded by two minutes.
func (c *Client) Reply() string {
	c.t.Helper()
	c.Conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	code, msg, err := c.Text.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatalf("reading reply: %v", err)
	}
	lines := strings.Split(msg, "\n")
	return strconv.Itoa(code) + " " + lines[len(lines)-1]
}

// Cmd sends one command line and returns the reply.
func (c *Client) Cmd(line string) string {
	c.t.Helper()
	if err := c.Text.PrintfLine("%s", line); err != nil {
		c.t.Fatal(err)
	}
	return c.Reply()
}

// Data sends DATA and the message and returns the reply at its end, or
// the refusal of DATA.
func (c *Client) Data(msg []byte) string {
	c.t.Helper()
	if reply := c.Cmd("DATA"); !strings.HasPrefix(reply, "354 ") {
		return reply
	}
	w := c.Text.DotWriter()
	w.Write(msg)
	w.Close()
	return c.Reply()
}

// RawData sends DATA and then body exactly as given, with no dot-stuffing
// and no end-of-data line of its own, and returns the reply at the end of
// data, or the refusal of DATA.
func (c *Client) RawData(body string) string {
	c.t.Helper()
	if reply := c.Cmd("DATA"); !strings.HasPrefix(reply, "354 ") {
		return reply
	}
	if _, err := c.Text.W.WriteString(body); err != nil {
		c.t.Fatal(err)
	}
	if err := c.Text.W.Flush(); err != nil {
		c.t.Fatal(err)
	}
	return c.Reply()
}

// Send runs one transaction and returns the reply at its end of data, or
// the first refusal before it; after a refused recipient it ends the
// transaction with RSET.
func (c *Client) Send(from string, to []string, msg []byte) string {
	c.t.Helper()
	if reply := c.Cmd("MAIL FROM:<" + from + ">"); !strings.HasPrefix(reply, "250 ") {
		return reply
	}
	for _, rcpt := range to {
		if reply := c.Cmd("RCPT TO:<" + rcpt + ">"); !strings.HasPrefix(reply, "250 ") {
			c.Cmd("RSET")
			return reply
		}
	}
	return c.Data(msg)
}

// Want sends a command and fails the test unless the reply starts with
// want.
func (c *Client) Want(line, want string) string {
	c.t.Helper()
	reply := c.Cmd(line)
	if !strings.HasPrefix(reply, want) {
		c.t.Errorf("%s: reply %q, want %q", line, reply, want)
	}
	return reply
}

// WantData is Data that fails the test unless the reply starts with want.
func (c *Client) WantData(msg []byte, want string) string {
	c.t.Helper()
	reply := c.Data(msg)
	if !strings.HasPrefix(reply, want) {
		c.t.Errorf("end of data: reply %q, want %q", reply, want)
	}
	return reply
}
