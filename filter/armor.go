package filter

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
)

const (
	armorBegin = "-----BEGIN PGP MESSAGE-----"
	armorEnd   = "-----END PGP MESSAGE-----"
)

// armorReader reads an ASCII-armored PGP MESSAGE (RFC 9580, section 6.2)
// and yields its data, decoded. It checks the frame as it goes: blank
// lines, then the BEGIN line, armor headers, the base64 data, an optional
// CRC24 line (not verified), the END line and nothing but blank lines
// after it. A frame or base64 error is returned from Read once the data
// before it has been read.
//
// Data lines as encoders write them (whole quanta, no padding) are
// decoded straight from the read buffer into the caller's, many at a time;
// any other line is read on its own and its text decoded once it makes
// whole quanta.
type armorReader struct {
	r       *bufio.Reader
	state   int
	err     error
	header  string // the key of the first armor header, if any
	midLine bool   // the last piece read ended inside an overlong line
	text    []byte // base64 text read line by line, less than a quantum
	dec     []byte // where text is decoded to
	out     []byte // decoded, not yet read
	padded  bool   // a quantum with padding was decoded: the data is over
}

const (
	armorBeforeBegin = iota
	armorHeaders
	armorData
	armorAfterCRC
	armorAfterEnd
)

// armorBuffer is the size of the armor's read buffer, and so the longest
// line read whole.
const armorBuffer = 8 << 10

func newArmorReader(r io.Reader) *armorReader {
	return &armorReader{r: bufio.NewReaderSize(r, armorBuffer)}
}

var errBase64AfterPadding = errors.New("base64: data after padding")

func (a *armorReader) Read(p []byte) (int, error) {
	for len(a.out) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if n := a.readLines(p); n > 0 {
			return n, nil
		}
		a.err = a.advance()
		if a.err == io.EOF && len(a.text) > 0 {
			a.err = io.ErrUnexpectedEOF
		}
	}
	n := copy(p, a.out)
	a.out = a.out[n:]
	return n, nil
}

// readLines decodes the data lines in the read buffer into p, as many as
// it takes, and returns how many bytes it wrote. It stops at the first
// line that is not plain data of whole quanta, and leaves that one to
// advance.
func (a *armorReader) readLines(p []byte) int {
	if a.state != armorData || a.midLine || len(a.text) > 0 || a.padded {
		return 0
	}
	buf, _ := a.r.Peek(a.r.Buffered())
	n, used := 0, 0
	for {
		i := bytes.IndexByte(buf[used:], '\n')
		if i < 0 {
			break
		}
		line := trimSpace(buf[used : used+i+1])
		if len(line) > 0 {
			if len(line)%4 != 0 || line[0] == '-' || line[0] == '=' || line[len(line)-1] == '=' || len(line)/4*3 > len(p)-n {
				break
			}
			k, err := base64.StdEncoding.Decode(p[n:], line)
			if err != nil {
				break
			}
			n += k
		}
		used += i + 1
	}
	a.r.Discard(used)
	return n
}

// advance reads one line, or one piece of an overlong data line, and
// either decodes its data or moves the state on.
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
		return a.decode(trimSpace(raw))
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
		return a.decode(line)
	}
	return nil
}

// decode adds text to what is left of the lines before and decodes the
// whole quanta.
func (a *armorReader) decode(text []byte) error {
	if len(text) == 0 {
		return nil
	}
	if a.padded {
		return errBase64AfterPadding
	}
	a.text = append(a.text, text...)
	whole := len(a.text) / 4 * 4
	if whole == 0 {
		return nil
	}
	if need := whole / 4 * 3; cap(a.dec) < need {
		a.dec = make([]byte, need)
	}
	k, err := base64.StdEncoding.Decode(a.dec[:cap(a.dec)], a.text[:whole])
	if err != nil {
		return err
	}
	a.out = a.dec[:k]
	a.padded = a.text[whole-1] == '='
	a.text = a.text[:copy(a.text, a.text[whole:])]
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
