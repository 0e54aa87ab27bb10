package smtpd

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-smtp"
)

// maxCommandLine bounds an SMTP command line, parameters included.
const maxCommandLine = 8192

// paramListener hands out connections that drop RCPT TO parameters.
type paramListener struct {
	net.Listener
}

func (l paramListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &paramConn{Conn: c}, nil
}

// paramConn is the server side of an SMTP connection that removes every
// parameter from RCPT TO commands before go-smtp reads them: Postfix passes
// on whatever its clients sent (ORCPT, NOTIFY, unknown and malformed ones),
// and filtermail accepts them all. It follows the session closely enough to
// leave message content alone: a DATA body from the 354 reply to the
// end-of-data line, as go-smtp's data reader sees it, and BDAT chunks by
// their size. Command lines longer than maxCommandLine end the connection.
type paramConn struct {
	net.Conn

	in    []byte // read from the client, not yet looked at
	out   []byte // looked at, ready for go-smtp
	err   error  // the client connection's read error, once it came
	state int
	data  dataEnd // where a DATA body ends
	chunk uint64  // bytes of the BDAT chunk still to come

	accepted atomic.Bool // a 354 reply was written
	buf      [4096]byte
}

const (
	stateCommand = iota
	stateAfterDATA
	stateData
	stateChunk
)

func (c *paramConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.state == stateAfterDATA {
			// go-smtp answers DATA before it reads again.
			c.state = stateCommand
			if c.accepted.Swap(false) {
				c.state, c.data = stateData, dataEnd{}
			}
		}
		if len(c.in) == 0 && c.err == nil && (c.state == stateData || c.state == stateChunk) {
			return c.readBody(p)
		}
		if c.process() {
			continue
		}
		if c.err != nil {
			if len(c.in) == 0 {
				return 0, c.err
			}
			c.out, c.in = append(c.out, c.in...), nil
			break
		}
		n, err := c.Conn.Read(c.buf[:])
		c.in = append(c.in, c.buf[:n]...)
		c.err = err
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

func (c *paramConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("354")) || bytes.Contains(p, []byte("\n354")) {
		c.accepted.Store(true)
	}
	return c.Conn.Write(p)
}

// readBody reads message content straight into p, keeping back what follows
// its end.
func (c *paramConn) readBody(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.err = err
	k := c.bodyPrefix(p[:n])
	c.in = append(c.in, p[k:n]...)
	if k == 0 && err != nil && len(c.in) == 0 {
		return 0, err
	}
	return k, nil
}

// bodyPrefix returns how much of b belongs to the body being read and
// moves to command state when the body ends inside b.
func (c *paramConn) bodyPrefix(b []byte) int {
	if c.state == stateChunk {
		k := int(min(uint64(len(b)), c.chunk))
		if c.chunk -= uint64(k); c.chunk == 0 {
			c.state = stateCommand
		}
		return k
	}
	k, done := c.data.scan(b)
	if done {
		c.state = stateCommand
	}
	return k
}

// process moves input to output and reports whether it made progress.
func (c *paramConn) process() bool {
	if len(c.in) == 0 {
		return false
	}
	if c.state == stateData || c.state == stateChunk {
		k := c.bodyPrefix(c.in)
		c.out, c.in = append(c.out, c.in[:k]...), c.in[k:]
		return true
	}
	i := bytes.IndexByte(c.in, '\n')
	if i < 0 {
		if len(c.in) > maxCommandLine {
			c.in, c.err = nil, smtp.ErrTooLongLine
		}
		return false
	}
	line := c.in[:i+1]
	c.in = c.in[i+1:]
	verb, arg, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
	switch strings.ToUpper(verb) {
	case "RCPT":
		c.out = append(c.out, stripRcptParams(line)...)
	case "DATA":
		c.out = append(c.out, line...)
		c.state = stateAfterDATA
	case "BDAT":
		c.out = append(c.out, line...)
		if size, ok := chunkSize(arg); ok && size > 0 {
			c.state, c.chunk = stateChunk, size
		}
	default:
		c.out = append(c.out, line...)
	}
	return true
}

// chunkSize returns the size of a BDAT command that go-smtp will follow
// by reading the chunk.
func chunkSize(arg string) (uint64, bool) {
	args := strings.Fields(arg)
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0, false
	}
	size, err := strconv.ParseUint(args[0], 10, 32)
	return size, err == nil
}

// stripRcptParams returns "RCPT TO:<path>\r\n" for a RCPT command line,
// dropping what follows the path. A line it cannot read stays as it is,
// for go-smtp to refuse.
func stripRcptParams(line []byte) []byte {
	const prefix = "RCPT TO:"
	if len(line) < len(prefix) || !strings.EqualFold(string(line[:len(prefix)]), prefix) {
		return line
	}
	rest := bytes.TrimLeft(line[len(prefix):], " ")
	end := pathEnd(rest)
	if end < 0 {
		return line
	}
	out := make([]byte, 0, len(prefix)+end+2)
	out = append(out, line[:len(prefix)]...)
	out = append(out, rest[:end]...)
	return append(out, '\r', '\n')
}

// pathEnd returns the length of the path at the start of s: up to the '>'
// that closes '<', outside quoted strings, or up to the first space for a
// bare address. It returns -1 when there is no path.
func pathEnd(s []byte) int {
	if len(s) == 0 || s[0] != '<' {
		end := bytes.IndexAny(s, " \r\n")
		if end <= 0 {
			return -1
		}
		return end
	}
	quoted := false
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == '>' && !quoted:
			return i + 1
		case s[i] == '\r' || s[i] == '\n':
			return -1
		}
	}
	return -1
}

// dataEnd finds the end-of-data line of a DATA body exactly where go-smtp's
// data reader does: ".\r\n" at the start of the body or after "\r\n".
type dataEnd struct {
	state int
}

const (
	lineStart = iota // also the start of the body
	lineDot
	lineDotCR
	lineCR
	lineMiddle
)

// scan returns how many bytes of b belong to the body, end-of-data line
// included, and whether that line was among them.
func (d *dataEnd) scan(b []byte) (int, bool) {
	for i, ch := range b {
		switch d.state {
		case lineStart:
			switch ch {
			case '.':
				d.state = lineDot
			case '\r':
				d.state = lineCR
			default:
				d.state = lineMiddle
			}
		case lineDot:
			if ch == '\r' {
				d.state = lineDotCR
			} else {
				d.state = lineMiddle
			}
		case lineDotCR:
			if ch == '\n' {
				d.state = lineStart
				return i + 1, true
			}
			d.state = lineMiddle
		case lineCR:
			if ch == '\n' {
				d.state = lineStart
			} else {
				d.state = lineMiddle
			}
		case lineMiddle:
			if ch == '\r' {
				d.state = lineCR
			}
		}
	}
	return len(b), false
}
