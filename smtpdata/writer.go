package smtpdata

import (
	"bytes"
	"io"
)

// Writer dot-stuffs a body for DATA (RFC 5321, section 4.5.2): a line
// that starts with a dot gets one more; the bytes are otherwise
// unchanged. A line starts after an LF, as servers read lines.
type Writer struct {
	w   io.Writer
	bol bool // at the beginning of a line
}

// NewWriter returns a Writer of a body to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, bol: true} }

// Write writes p, dot-stuffed; it counts the bytes of p written.
func (d *Writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			if _, err := d.w.Write([]byte{'.'}); err != nil {
				return n, err
			}
		}
		// Up to and including the next LF, or all of p.
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i+1]
		}
		k, err := d.w.Write(seg)
		n += k
		if err != nil {
			return n, err
		}
		d.bol = i >= 0
		p = p[len(seg):]
	}
	return n, nil
}

// End ends the body: CRLF if it does not end with a line break, then the
// end-of-data line.
func (d *Writer) End() error {
	end := ".\r\n"
	if !d.bol {
		end = "\r\n.\r\n"
	}
	_, err := io.WriteString(d.w, end)
	return err
}
