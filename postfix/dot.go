package postfix

import (
	"bufio"
	"bytes"
)

// dotState dot-stuffs a body sent in DATA: a dot that starts a line is
// doubled. A line starts after any LF, as Postfix reads lines; a body
// that Postfix is to take ends its lines in CRLF.
type dotState struct {
	started bool // a byte was written
	afterLF bool // the last byte written was an LF
}

// write writes p, dot-stuffed, to w.
func (d *dotState) write(w *bufio.Writer, p []byte) error {
	for len(p) > 0 {
		if (!d.started || d.afterLF) && p[0] == '.' {
			w.WriteByte('.')
		}
		d.started = true
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.afterLF = false
			_, err := w.Write(p)
			return err
		}
		d.afterLF = true
		if _, err := w.Write(p[:i+1]); err != nil {
			return err
		}
		p = p[i+1:]
	}
	return nil
}

// end writes the end-of-data line, after a line break if the body did
// not end in one.
func (d *dotState) end(w *bufio.Writer) {
	if d.started && !d.afterLF {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
}
