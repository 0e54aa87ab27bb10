package relaytest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Bounds of the SMTP relay: a command line with its line end, the data of
// a message, and the time one read or write may take. The SIZE it
// announces is below maxData, which it enforces.
const (
	maxLine   = 4096
	maxData   = 64 << 20
	sizeLimit = 52428800
	ioTimeout = 2 * time.Minute
)

// Errors for input over a bound, which has been read to its end.
var (
	errLineTooLong = errors.New("line too long")
	errTooLarge    = errors.New("message too large")
)

// session is one connection to the SMTP relay.
type session struct {
	s    *SMTP
	n    int      // connection number
	raw  net.Conn // the TCP connection, with timeouts
	c    net.Conn // raw, or TLS over it after STARTTLS
	r    *bufio.Reader
	helo string // "" until EHLO or HELO (again after STARTTLS)

	tls     bool
	resumed bool

	// the transaction, when mail is set
	mail   bool
	from   string
	params string
	to     []string
}

// serve speaks SMTP on c until the client quits, the connection fails or
// the relay closes.
func (s *SMTP) serve(c *conn) {
	defer c.Close()
	raw := timeoutConn{c}
	ss := &session{s: s, n: c.n, raw: raw, c: raw, r: bufio.NewReader(raw)}
	if err := ss.reply(s.greeting); err != nil {
		return
	}
	for {
		line, err := readLine(ss.r, maxLine)
		if errors.Is(err, errLineTooLong) {
			err = ss.reply("500 5.5.2 Error: line too long")
		} else if err == nil {
			err = ss.command(strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil {
			return
		}
	}
}

// errQuit ends a session that is over.
var errQuit = errors.New("session over")

// command carries out one command line and answers it. An error ends the
// session.
func (ss *session) command(line string) error {
	verb, arg, _ := strings.Cut(line, " ")
	switch strings.ToUpper(verb) {
	case "EHLO", "HELO":
		return ss.hello(strings.ToUpper(verb), arg)
	case "STARTTLS":
		return ss.startTLS(arg)
	case "MAIL":
		return ss.mailFrom(arg)
	case "RCPT":
		return ss.rcptTo(arg)
	case "DATA":
		return ss.data(arg)
	case "RSET":
		ss.s.mu.Lock()
		ss.s.resets++
		ss.s.mu.Unlock()
		ss.reset()
		return ss.reply("250 2.0.0 Ok")
	case "NOOP":
		return ss.reply("250 2.0.0 Ok")
	case "QUIT":
		ss.reply("221 2.0.0 Bye")
		return errQuit
	case "":
		return ss.reply("500 5.5.2 Error: bad syntax")
	}
	return ss.reply("502 5.5.2 Error: command not recognized")
}

// hello answers EHLO or HELO (verb).
func (ss *session) hello(verb, name string) error {
	name = strings.TrimSpace(name)
	if name == "" {
		return ss.reply("501 5.5.4 Syntax: " + verb + " hostname")
	}
	ss.helo = name
	ss.reset()
	if verb == "HELO" {
		return ss.reply("250 " + ss.s.host)
	}
	lines := []string{ss.s.host, "PIPELINING", "8BITMIME", "SMTPUTF8", fmt.Sprintf("SIZE %d", sizeLimit)}
	if ss.s.config != nil && !ss.tls {
		lines = append(lines, "STARTTLS")
	}
	lines = append(lines, "ENHANCEDSTATUSCODES")
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("250" + sep + l)
	}
	return ss.reply(b.String())
}

// startTLS answers STARTTLS and, if it is offered, shakes hands as a TLS
// server. The client starts over with EHLO.
func (ss *session) startTLS(arg string) error {
	switch {
	case ss.s.config == nil:
		return ss.reply("502 5.5.1 Error: command not implemented")
	case ss.tls:
		return ss.reply("503 5.5.1 Error: TLS already active")
	case arg != "":
		return ss.reply("501 5.5.4 Syntax: STARTTLS")
	}
	if err := ss.reply("220 2.0.0 Ready to start TLS"); err != nil {
		return err
	}
	tc := tls.Server(ss.raw, ss.s.config)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	ss.c = tc
	ss.r = bufio.NewReader(tc) // what the client sent before TLS is dropped
	ss.tls = true
	ss.resumed = tc.ConnectionState().DidResume
	ss.helo = ""
	ss.reset()
	return nil
}

// mailFrom answers MAIL FROM:<address> parameters.
func (ss *session) mailFrom(arg string) error {
	ss.s.mu.Lock()
	ss.s.transactions++
	reply := ss.s.mailReply
	ss.s.mu.Unlock()
	switch {
	case ss.helo == "":
		return ss.reply("503 5.5.1 Error: send HELO/EHLO first")
	case ss.mail:
		return ss.reply("503 5.5.1 Error: nested MAIL command")
	}
	from, params, ok := parsePath(arg, "FROM:")
	if !ok {
		return ss.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
	}
	if success(reply) {
		ss.mail, ss.from, ss.params, ss.to = true, from, params, nil
	}
	return ss.reply(reply)
}

// rcptTo answers RCPT TO:<address> parameters.
func (ss *session) rcptTo(arg string) error {
	if !ss.mail {
		return ss.reply("503 5.5.1 Error: need MAIL command")
	}
	to, _, ok := parsePath(arg, "TO:")
	if !ok {
		return ss.reply("501 5.5.4 Syntax: RCPT TO:<address>")
	}
	ss.s.mu.Lock()
	reply, ok := ss.s.rcptReplies[to]
	ss.s.mu.Unlock()
	if !ok {
		reply = defaultRcptReply
	}
	if success(reply) {
		ss.to = append(ss.to, to)
	}
	return ss.reply(reply)
}

// data answers DATA, reads the message and answers it.
func (ss *session) data(arg string) error {
	switch {
	case arg != "":
		return ss.reply("501 5.5.4 Syntax: DATA")
	case !ss.mail:
		return ss.reply("503 5.5.1 Error: need MAIL command")
	case len(ss.to) == 0:
		return ss.reply("554 5.5.1 Error: no valid recipients")
	}
	ss.s.mu.Lock()
	stall := ss.s.stallData
	ss.s.mu.Unlock()
	if err := ss.reply("354 End data with <CR><LF>.<CR><LF>"); err != nil {
		return err
	}
	data, err := readData(ss.r, maxData)
	if errors.Is(err, errTooLarge) {
		ss.reset()
		return ss.reply("552 5.3.4 Error: message too large")
	}
	if err != nil {
		return err
	}
	if stall {
		<-ss.s.stop
		return errQuit
	}
	ss.s.mu.Lock()
	reply := ss.s.dataReply
	if success(reply) {
		ss.s.messages = append(ss.s.messages, Message{
			From:    ss.from,
			Params:  ss.params,
			To:      ss.to,
			Data:    data,
			Helo:    ss.helo,
			TLS:     ss.tls,
			Resumed: ss.resumed,
			Conn:    ss.n,
		})
	}
	ss.s.mu.Unlock()
	ss.reset()
	return ss.reply(reply)
}

// reset ends the transaction.
func (ss *session) reset() {
	ss.mail, ss.from, ss.params, ss.to = false, "", "", nil
}

// reply writes a raw reply and the final CRLF.
func (ss *session) reply(r string) error {
	_, err := io.WriteString(ss.c, r+"\r\n")
	return err
}

// success tells whether a raw reply is a 2xx one.
func success(reply string) bool { return strings.HasPrefix(reply, "2") }

// parsePath parses the argument of MAIL or RCPT: prefix (any case), then
// <address> (a space before it is tolerated), then parameters. It returns
// the address without brackets and what followed them.
func parsePath(arg, prefix string) (addr, rest string, ok bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", "", false
	}
	arg = strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(arg, "<") {
		return "", "", false
	}
	addr, rest, ok = strings.Cut(arg[1:], ">")
	return addr, rest, ok
}

// readLine reads a line and its line end. A line longer than max bytes is
// read to its end and dropped: errLineTooLong.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	long := false
	for {
		frag, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if len(line)+len(frag) > max {
			long, line = true, nil
		}
		if !long {
			line = append(line, frag...)
		}
		if err == nil {
			break
		}
	}
	if long {
		return nil, errLineTooLong
	}
	return line, nil
}

// readData reads message data up to the line "." and returns it
// dot-unstuffed, line ends kept, the final "." line removed. Data over max
// bytes is read to its end and dropped: errTooLarge.
func readData(r *bufio.Reader, max int) ([]byte, error) {
	var data bytes.Buffer
	long := false
	lineStart := true
	for {
		frag, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if lineStart {
			if err == nil && (string(frag) == ".\r\n" || string(frag) == ".\n") {
				break
			}
			frag = bytes.TrimPrefix(frag, []byte("."))
		}
		lineStart = err == nil
		if data.Len()+len(frag) > max {
			long = true
			data = bytes.Buffer{}
		}
		if !long {
			data.Write(frag)
		}
	}
	if long {
		return nil, errTooLarge
	}
	return data.Bytes(), nil
}

// timeoutConn is a connection whose every read and write must end within
// ioTimeout.
type timeoutConn struct{ net.Conn }

// Read reads with a deadline.
func (c timeoutConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(ioTimeout))
	return c.Conn.Read(p)
}

// Write writes with a deadline.
func (c timeoutConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	return c.Conn.Write(p)
}
