package gate

import "bytes"

// lineEnds checks, as a message streams by, that every line ends in
// CRLF: no bare CR, no bare LF, a CRLF at the end, and not empty. Postfix
// never sends anything else; a message that does is refused as SMTP
// smuggling.
//
// Every LF must follow a CR, and there must be as many CRs as LFs: then
// every CR is one before an LF. Both are checked on whole blocks.
type lineEnds struct {
	prev     byte  // the last byte seen
	cr, lf   int64 // CRs and LFs seen
	bareLF   bool
	nonEmpty bool
}

// check takes the next bytes of the message.
func (l *lineEnds) check(p []byte) {
	if len(p) == 0 {
		return
	}
	l.nonEmpty = true
	l.cr += int64(bytes.Count(p, cr))
	for i := 0; !l.bareLF; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		before := l.prev
		if i > 0 {
			before = p[i-1]
		}
		l.bareLF = before != '\r'
		l.lf++
		i++
	}
	l.prev = p[len(p)-1]
}

var cr = []byte{'\r'}

// ok reports whether the whole message had its lines end in CRLF.
func (l *lineEnds) ok() bool { return l.nonEmpty && !l.bareLF && l.cr == l.lf && l.prev == '\n' }

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
