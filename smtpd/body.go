package smtpd

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/metrics"
	"filtermail/smtpdata"
)

// go-smtp's server reads a DATA body one byte at a time, which makes the
// plumbing cost many times what the verdict costs. So a paramConn reads
// DATA bodies itself, in blocks: once go-smtp has answered DATA with 354,
// the session reads the body from the connection (see paramConn.Body),
// undone of its dot-stuffing by a smtpdata.Scanner, and go-smtp is handed the
// end-of-data line alone, which ends its own reader at once. BDAT chunks,
// which go-smtp reads in blocks itself, are left to it.

// Limits of a DATA body.
const (
	// bodyBlock is how much of a body is read at a time.
	bodyBlock = 64 << 10
	// minDataRate is the slowest a body may come, in bytes per second,
	// once readTimeout has passed: a body has readTimeout plus a second
	// for each minDataRate bytes received, as Postfix's
	// smtpd_min_data_rate with smtpd_per_request_deadline. A sender
	// that dribbles a byte now and then is cut off; a slow link is not.
	minDataRate = 500
)

// endOfData is what go-smtp is handed in place of a body: it ends its
// reader, which starts at the beginning of a line.
const endOfData = ".\r\n"

// dataBody is the DATA body a paramConn is reading.
type dataBody struct {
	c        *paramConn
	scan     smtpdata.Scanner
	limit    int64 // past it, the rest is read but not kept
	size     int64
	deadline time.Time // for the whole body, extended as bytes come

	buf  []byte // a block read from the client
	out  []byte // content, not yet read
	off  int    // read up to here in out
	done bool   // the end-of-data line was read
	err  error  // once set, what Read returns when out is empty
}

func newDataBody(c *paramConn, limit int64) *dataBody {
	return &dataBody{c: c, limit: limit, deadline: time.Now().Add(c.l.idle)}
}

// errBodyTooSlow is the error of a body that came slower than minDataRate.
var errBodyTooSlow = errors.New("message body slower than the minimum data rate")

// Read reads content of the body. At its end it returns io.EOF, or
// smtp.ErrDataTooLarge when the body was over the limit.
func (b *dataBody) Read(p []byte) (int, error) {
	for b.off == len(b.out) {
		if b.err != nil {
			b.release()
			return 0, b.err
		}
		b.out, b.off = b.out[:0], 0
		b.fill()
	}
	n := copy(p, b.out[b.off:])
	b.off += n
	if b.off == len(b.out) && b.err != nil {
		// The end comes with the last bytes: the reader knows at once
		// that the client's message is over.
		b.release()
		return n, b.err
	}
	return n, nil
}

// emit keeps content for Read, within the limit.
func (b *dataBody) emit(p []byte) {
	if b.size += int64(len(p)); b.limit > 0 && b.size > b.limit {
		return
	}
	b.out = append(b.out, p...)
}

// fill scans what the client sent next: what the connection holds
// already, or one read from the client.
func (b *dataBody) fill() {
	c := b.c
	if len(c.in) > 0 {
		k, done := b.scan.Scan(c.in, b.emit)
		c.in = c.in[k:]
		if done {
			b.end()
		}
		return
	}
	if c.err != nil {
		b.fail(c.err)
		return
	}
	if b.buf == nil {
		block := c.l.blocks.get()
		b.buf, b.out = block[:bodyBlock], append(block[bodyBlock:bodyBlock], b.out...)
	}
	now := time.Now()
	if !now.Before(b.deadline) {
		b.fail(errBodyTooSlow)
		return
	}
	readBy := now.Add(c.l.idle)
	if b.deadline.Before(readBy) {
		readBy = b.deadline
	}
	c.SetReadDeadline(readBy)
	n, err := c.Conn.Read(b.buf)
	if n == 0 && c.woken(err) {
		return
	}
	b.deadline = b.deadline.Add(time.Duration(n) * time.Second / time.Duration(c.l.minRate))
	k, done := b.scan.Scan(b.buf[:n], b.emit)
	if done {
		c.in = append(c.in, b.buf[k:n]...)
		b.end()
		return
	}
	if err != nil {
		c.err = quietError(err)
		b.fail(c.err)
	}
}

// end ends the body: go-smtp is handed the end-of-data line next.
func (b *dataBody) end() {
	c := b.c
	b.done = true
	b.err = io.EOF
	if b.limit > 0 && b.size > b.limit {
		b.err = smtp.ErrDataTooLarge
	}
	c.state = stateCommand
	c.body = nil
	c.out = append(c.out, endOfData...)
	c.pending = append(c.pending, command{verb: metrics.EndOfData})
}

// fail ends a body that could not be read to its end.
func (b *dataBody) fail(err error) {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	b.err = err
}

// discard reads the rest of the body, for a session that did not.
func (b *dataBody) discard() error {
	defer b.release()
	for !b.done {
		b.out, b.off = b.out[:0], 0
		if b.err != nil {
			return b.err
		}
		b.fill()
	}
	return nil
}

// release gives the body's block back, once the body is read.
func (b *dataBody) release() {
	if b.buf != nil {
		b.c.l.blocks.put(b.buf[:cap(b.buf)])
		b.buf, b.out, b.off = nil, nil, 0
	}
}

// blockPool keeps the blocks bodies are read in, for the next body: a
// block holds what is read from the client, then the content scanned.
type blockPool struct{ p sync.Pool }

func (bp *blockPool) get() []byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 2*bodyBlock)
}

func (bp *blockPool) put(b []byte) {
	if cap(b) == 2*bodyBlock {
		bp.p.Put(&b)
	}
}
