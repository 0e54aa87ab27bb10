package smtpd

import (
	"bytes"
	"strconv"
	"strings"
)

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

// dataEnd finds the end-of-data line of a DATA body: ".\r\n" at the start
// of the body or right after "\r\n". A CR that follows a CR leaves it
// just after a CR, so "a\r\r\n.\r\n" is a whole body, end included;
// go-smtp's data reader misses that end (see goSMTPReader). A bare LF
// does not start a line: SMTP lines end in CRLF.
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
			switch ch {
			case '\n':
				d.state = lineStart
				return i + 1, true
			case '\r':
				d.state = lineCR
			default:
				d.state = lineMiddle
			}
		case lineCR:
			switch ch {
			case '\n':
				d.state = lineStart
			case '\r':
				// Still just after a CR.
			default:
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
