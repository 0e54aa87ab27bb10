// Package smtpdata is the bytes of an SMTP DATA body on the wire: the
// Scanner finds the end of a body and undoes its dot-stuffing, the Writer
// dot-stuffs one and ends it. Both work on buffers, not bytes.
package smtpdata

import "bytes"

// Scanner follows a DATA body as it comes, in blocks of any size: it
// finds its end, the line ".\r\n" at the start of the body or after a
// CRLF (RFC 5321, 4.1.1.4), and undoes the dot-stuffing of every other
// line. It works on buffers, not bytes: within a line, everything up to
// the next CR is content, passed on in one piece.
//
// A CR that a CR follows leaves it just after a CR, so "a\r\r\n.\r\n" is
// a whole body, end included; a bare LF does not start a line; and the
// dot of a line ".\rX" is stuffing, the CR content, as a line reader sees
// them.
type Scanner struct {
	state int
}

// States of a Scanner, after the bytes seen so far.
const (
	lineStart = iota // at the beginning of a line, or of the body
	lineDot          // a dot at the beginning of a line
	lineDotCR        // ".\r" at the beginning of a line
	lineCR           // a CR
	lineData         // within a line
)

var (
	cr = []byte{'\r'}
	lf = []byte{'\n'}
)

// Scan takes the next bytes of a body and passes the content among them to
// emit, in order, in pieces that alias p or are constant. It returns how
// many bytes of p belong to the body, the end-of-data line included, and
// whether that line was among them. After the end, Scan must not be
// called again.
func (s *Scanner) Scan(p []byte, emit func([]byte)) (int, bool) {
	for i := 0; i < len(p); {
		c := p[i]
		switch s.state {
		case lineData:
			j := bytes.IndexByte(p[i:], '\r')
			if j < 0 {
				emit(p[i:])
				return len(p), false
			}
			emit(p[i : i+j+1])
			i += j + 1
			s.state = lineCR
			continue
		case lineStart:
			switch c {
			case '.':
				s.state = lineDot // a stuffed dot, or the end
			case '\r':
				emit(cr)
				s.state = lineCR
			default:
				s.state = lineData
				continue // the byte is content: taken as such above
			}
		case lineDot:
			if c != '\r' {
				s.state = lineData // the dot was stuffing
				continue
			}
			s.state = lineDotCR
		case lineDotCR:
			if c == '\n' {
				return i + 1, true
			}
			// ".\r" then more: the dot was stuffing, the CR is content.
			emit(cr)
			s.state = lineCR
			continue
		case lineCR:
			switch c {
			case '\n':
				emit(lf)
				s.state = lineStart
			case '\r':
				emit(cr)
			default:
				s.state = lineData
				continue
			}
		}
		i++
	}
	return len(p), false
}
