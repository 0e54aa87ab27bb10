package filter

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

const (
	armorBegin = "-----BEGIN PGP MESSAGE-----"
	armorEnd   = "-----END PGP MESSAGE-----"
)

// armorReader reads an ASCII-armored PGP MESSAGE (RFC 9580, section 6.2)
// and yields the base64 text of its data, without line breaks, for a base64
// decoder. It checks the frame as it goes: blank lines, then the BEGIN
// line, armor headers, the data, an optional CRC24 line (not verified), the
// END line and nothing but blank lines after it. A frame error is returned
// from Read.
type armorReader struct {
	r       *bufio.Reader
	state   int
	line    []byte // data not yet returned
	err     error
	header  string // the key of the first armor header, if any
	midLine bool   // the last piece read ended inside an overlong line
}

const (
	armorBeforeBegin = iota
	armorHeaders
	armorData
	armorAfterCRC
	armorAfterEnd
)

func newArmorReader(r io.Reader) *armorReader {
	return &armorReader{r: bufio.NewReaderSize(r, 8<<10)}
}

// Read yields as many lines as p takes and the reader holds, so that the
// text is decoded in large pieces.
func (a *armorReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(a.line) == 0 {
			if a.err != nil || n > 0 && a.r.Buffered() == 0 {
				break // no more, or not without waiting
			}
			a.err = a.advance()
			continue
		}
		k := copy(p[n:], a.line)
		a.line = a.line[k:]
		n += k
	}
	if n > 0 {
		return n, nil
	}
	return 0, a.err
}

// advance reads one line, or one piece of an overlong data line, and
// either sets a.line or moves the state on.
func (a *armorReader) advance() error {
	raw, err := a.r.ReadSlice('\n')
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return err
	}
	continued := a.midLine
	a.midLine = err == bufio.ErrBufferFull
	if a.midLine || continued {
		// Too long for a frame line: only data can be this long.
		if a.state != armorData && a.state != armorHeaders {
			return errors.New("armor: overlong line")
		}
		a.state = armorData
		a.line = trimSpace(raw)
		return nil
	}
	if len(raw) == 0 && err == io.EOF {
		if a.state != armorAfterEnd {
			return errors.New("armor: no END line")
		}
		return io.EOF
	}
	line := trimSpace(raw)
	blank := len(line) == 0

	switch a.state {
	case armorBeforeBegin:
		if blank {
			return nil
		}
		if string(line) != armorBegin {
			return errors.New("armor: no BEGIN PGP MESSAGE line")
		}
		a.state = armorHeaders
	case armorHeaders:
		if blank {
			a.state = armorData
			return nil
		}
		if key, ok := armorHeaderKey(line); ok {
			if a.header == "" {
				a.header = key
			}
			return nil
		}
		a.state = armorData
		return a.dataLine(line)
	case armorData:
		return a.dataLine(line)
	case armorAfterCRC:
		if string(line) != armorEnd {
			return errors.New("armor: no END line after the checksum")
		}
		a.state = armorAfterEnd
	case armorAfterEnd:
		if !blank {
			return errors.New("armor: text after the END line")
		}
	}
	return nil
}

func (a *armorReader) dataLine(line []byte) error {
	switch {
	case len(line) == 0:
	case line[0] == '=':
		a.state = armorAfterCRC
	case string(line) == armorEnd:
		a.state = armorAfterEnd
	case bytes.HasPrefix(line, []byte("-----")):
		return errors.New("armor: unexpected frame line")
	default:
		a.line = line
	}
	return nil
}

// armorHeaderKey returns the key of line if it has the form "Key: value".
func armorHeaderKey(line []byte) (string, bool) {
	i := bytes.Index(line, []byte(": "))
	if i <= 0 {
		return "", false
	}
	for _, c := range line[:i] {
		if c <= ' ' || c > '~' {
			return "", false
		}
	}
	return string(line[:i]), true
}

// trimSpace returns line without the spaces, tabs and line break at its
// end.
func trimSpace(line []byte) []byte {
	n := len(line)
	for n > 0 {
		switch line[n-1] {
		case ' ', '\t', '\r', '\n':
			n--
			continue
		}
		break
	}
	return line[:n]
}
