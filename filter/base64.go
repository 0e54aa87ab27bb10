package filter

import (
	"encoding/base64"
	"errors"
	"io"
)

// base64Reader decodes base64 text without line breaks, as armorReader
// yields it, in large pieces: encoding/base64's stream decoder works on
// what each Read brings, an armor line at a time.
type base64Reader struct {
	src    io.Reader
	text   []byte // read, not yet decoded: less than a quantum
	dec    []byte // where text is decoded to
	out    []byte // decoded, not yet read
	err    error
	padded bool // a quantum with padding was decoded: the data is over
	grow   bool // the last read filled text
}

// How much text is decoded at a time: a little at first, for the many
// small messages, up to base64Chunk for large ones.
const (
	base64First = 2 << 10
	base64Chunk = 32 << 10
)

func newBase64Reader(src io.Reader) *base64Reader {
	return &base64Reader{src: src}
}

var errBase64AfterPadding = errors.New("base64: data after padding")

func (d *base64Reader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// fill reads more text and decodes its whole quanta.
func (d *base64Reader) fill() {
	if d.grow || d.text == nil {
		// The last read filled it: a larger one.
		size := min(max(2*cap(d.text), base64First), base64Chunk)
		d.text = append(make([]byte, 0, size), d.text...)
		d.dec = make([]byte, size/4*3)
	}
	n, err := d.src.Read(d.text[len(d.text):cap(d.text)])
	d.text = d.text[:len(d.text)+n]
	d.grow = len(d.text) == cap(d.text) && cap(d.text) < base64Chunk
	if n > 0 && d.padded {
		d.err = errBase64AfterPadding
		return
	}
	whole := len(d.text) / 4 * 4
	if err == io.EOF && whole != len(d.text) {
		d.err = io.ErrUnexpectedEOF
		return
	}
	if whole > 0 {
		quanta := d.text[:whole]
		k, derr := base64.StdEncoding.Decode(d.dec, quanta)
		if derr != nil {
			d.err = derr
			return
		}
		d.out = d.dec[:k]
		d.padded = quanta[whole-1] == '='
		d.text = d.text[:copy(d.text, d.text[whole:])]
	}
	if err != nil {
		d.err = err
	}
}
