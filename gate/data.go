package gate

import "bytes"

// lineEnds checks, as a message streams by, that every line ends in
// CRLF: no bare CR, no bare LF, a CRLF at the end, and not empty. Postfix
// never sends anything else; a message that does is refused as SMTP
// smuggling.
type lineEnds struct {
	prev byte // the last byte seen
	bad  bool
}

// check takes the next bytes of the message.
func (l *lineEnds) check(p []byte) {
	for !l.bad && len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			if l.prev == '\r' {
				l.bad = true
			}
			l.prev = p[len(p)-1]
			return
		}
		if (p[i] == '\n') != (l.prev == '\r' && i == 0) {
			l.bad = true // a bare LF, or a CR before this byte
		}
		if i > 0 && l.prev == '\r' {
			l.bad = true
		}
		l.prev, p = p[i], p[i+1:]
	}
}

// ok reports whether the whole message had its lines end in CRLF.
func (l *lineEnds) ok() bool { return !l.bad && l.prev == '\n' }

// headerEnd finds the end of a message's header, the first empty line,
// as the MIME reader sees it: a line break right at the start or after
// one, a CR before the LF or not.
type headerEnd struct {
	state int
	n     int64 // bytes of the header seen
}

const (
	headerLineStart = iota
	headerLineStartCR
	headerLineMiddle
)

// scan takes the next bytes of the message and returns how many of them
// belong to the header, its empty line included, and whether it ended.
func (h *headerEnd) scan(p []byte) (int, bool) {
	for i := 0; i < len(p); i++ {
		switch h.state {
		case headerLineMiddle:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				h.n += int64(len(p))
				return len(p), false
			}
			i += j
			h.state = headerLineStart
		case headerLineStart:
			switch p[i] {
			case '\n':
				h.n += int64(i + 1)
				return i + 1, true
			case '\r':
				h.state = headerLineStartCR
			default:
				h.state = headerLineMiddle
			}
		case headerLineStartCR:
			if p[i] == '\n' {
				h.n += int64(i + 1)
				return i + 1, true
			}
			h.state = headerLineMiddle
		}
	}
	h.n += int64(len(p))
	return len(p), false
}
