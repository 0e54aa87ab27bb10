package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/smtpdata"
)

// The SMTP client's bounds: a reply line (RFC 5321 allows 512 bytes;
// servers write more), the lines of one reply, and the time for each
// step, as Postfix's smtp_*_timeout.
const (
	maxReplyLine    = 4 << 10
	maxReplyLines   = 100
	greetTimeout    = time.Minute     // smtp_helo_timeout covers the greeting
	commandTimeout  = 2 * time.Minute // EHLO, STARTTLS, MAIL, RCPT, DATA, RSET
	tlsTimeout      = 30 * time.Second
	dataTimeout     = 3 * time.Minute // smtp_data_xfer_timeout, for each write of the body
	dataDoneTimeout = 5 * time.Minute // smtp_data_done_timeout, 600 s in Postfix
)

// smtpConn is a client connection to another relay's SMTP server. It is
// ours rather than go-smtp's client because a relay must say its own
// name in the EHLO that comes before STARTTLS, keep a deadline on every
// read and write, and pass the body on byte for byte.
type smtpConn struct {
	raw  net.Conn // the TCP connection: deadlines are set on it
	conn net.Conn // raw, or the TLS connection over it
	r    *bufio.Reader
	w    *bufio.Writer
	ext  map[string]string
	tls  bool
	used time.Time // when the last transaction ended
	born time.Time
	uses int
	key  string // the pool's key
}

// errProtocol is a reply that is no SMTP reply.
var errProtocol = errors.New("malformed SMTP reply")

func newSMTPConn(raw net.Conn) *smtpConn {
	c := &smtpConn{raw: raw, born: time.Now()}
	c.setConn(raw)
	return c
}

func (c *smtpConn) setConn(conn net.Conn) {
	c.conn = conn
	c.r = bufio.NewReaderSize(conn, maxReplyLine)
	c.w = bufio.NewWriter(conn)
}

func (c *smtpConn) Close() error { return c.raw.Close() }

// serverReply is a reply of the remote server: its code, enhanced code
// (NoEnhancedCode when it gave none) and text, lines joined by spaces.
type serverReply = smtp.SMTPError

// readReply reads one reply, waiting at most timeout.
func (c *smtpConn) readReply(timeout time.Duration) (*serverReply, error) {
	c.raw.SetReadDeadline(time.Now().Add(timeout))
	var code int
	var lines []string
	for i := 0; ; i++ {
		line, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: line over %d bytes", errProtocol, maxReplyLine)
		}
		if err != nil {
			return nil, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		if len(s) < 3 || len(s) > 3 && s[3] != ' ' && s[3] != '-' {
			return nil, fmt.Errorf("%w: %q", errProtocol, oneLine(s))
		}
		n, err := strconv.Atoi(s[:3])
		if err != nil || n < 200 || n > 599 || i > 0 && n != code {
			return nil, fmt.Errorf("%w: %q", errProtocol, oneLine(s))
		}
		code = n
		if len(s) > 4 {
			lines = append(lines, s[4:])
		}
		if len(s) == 3 || s[3] == ' ' {
			break
		}
		if i == maxReplyLines {
			return nil, fmt.Errorf("%w: over %d lines", errProtocol, maxReplyLines)
		}
	}
	r := &serverReply{Code: code, EnhancedCode: smtp.NoEnhancedCode}
	if len(lines) > 0 {
		// The enhanced code comes on every line; it is kept once.
		for i, l := range lines {
			if first, rest, _ := strings.Cut(l, " "); isEnhanced(first) {
				if i == 0 {
					var e smtp.EnhancedCode
					fmt.Sscanf(first, "%d.%d.%d", &e[0], &e[1], &e[2])
					r.EnhancedCode = e
				}
				lines[i] = rest
			}
		}
		r.Message = strings.Join(lines, "\n")
	}
	return r, nil
}

// cmd sends one command line and reads its reply.
func (c *smtpConn) cmd(timeout time.Duration, format string, args ...any) (*serverReply, error) {
	c.raw.SetWriteDeadline(time.Now().Add(timeout))
	fmt.Fprintf(c.w, format, args...)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	return c.readReply(timeout)
}

// hello reads the greeting and says EHLO, then STARTTLS with cfg, when
// cfg is not nil, and EHLO again. A reply other than the expected one is
// an error of type *serverReply.
func (c *smtpConn) hello(name string, cfg *tls.Config) error {
	r, err := c.readReply(greetTimeout)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if r.Code != 220 {
		return fmt.Errorf("greeting: %w", r)
	}
	if err := c.ehlo(name); err != nil {
		return err
	}
	if cfg == nil {
		return nil
	}
	if _, ok := c.ext["STARTTLS"]; !ok {
		return errNoStartTLS
	}
	if r, err := c.cmd(commandTimeout, "STARTTLS"); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	} else if r.Code != 220 {
		return fmt.Errorf("STARTTLS: %w", r)
	}
	tc := tls.Client(c.raw, cfg)
	c.raw.SetDeadline(time.Now().Add(tlsTimeout))
	if err := tc.Handshake(); err != nil {
		return &tlsError{err}
	}
	c.setConn(tc)
	c.tls = true
	return c.ehlo(name)
}

// errNoStartTLS is a server that does not offer STARTTLS where TLS is
// required.
var errNoStartTLS = errors.New("STARTTLS not offered")

// tlsError is a TLS handshake that failed: the certificate did not
// verify, or no common protocol.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "TLS: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// ehlo says EHLO and keeps the extensions offered.
func (c *smtpConn) ehlo(name string) error {
	r, err := c.cmd(commandTimeout, "EHLO %s", name)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if r.Code != 250 {
		return fmt.Errorf("EHLO: %w", r)
	}
	c.ext = make(map[string]string)
	lines := strings.Split(r.Message, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// reset says RSET: a pooled connection is fit for a new transaction.
func (c *smtpConn) reset() error {
	r, err := c.cmd(commandTimeout, "RSET")
	if err != nil {
		return err
	}
	if r.Code != 250 {
		return r
	}
	return nil
}

// quitTimeout bounds the wait for the reply to QUIT.
const quitTimeout = 5 * time.Second

// quit says QUIT and closes the connection.
func (c *smtpConn) quit() {
	c.cmd(quitTimeout, "QUIT")
	c.Close()
}

// writeData sends the message body after a 354, dot-stuffed, with the
// final dot, and reads the reply.
func (c *smtpConn) writeData(msg *message) (*serverReply, error) {
	c.raw.SetWriteDeadline(time.Now().Add(dataTimeout))
	dw := smtpdata.NewWriter(c.w)
	for _, chunk := range msg.chunks {
		// Each write has its own deadline, as Postfix's
		// smtp_data_xfer_timeout: a slow peer is fine, a stalled one not.
		c.raw.SetWriteDeadline(time.Now().Add(dataTimeout))
		if _, err := dw.Write(chunk); err != nil {
			return nil, err
		}
	}
	c.raw.SetWriteDeadline(time.Now().Add(dataTimeout))
	if err := dw.End(); err != nil {
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	return c.readReply(dataDoneTimeout)
}
