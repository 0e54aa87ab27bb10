package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/smtpdata"
)

// go-smtp's server reads a DATA body one byte at a time, which makes a
// large message cost many times what it costs to send it. So the LMTP
// connection reads the body itself, in blocks: once the server has
// written its 354, the bytes up to the end-of-data line are undone of
// their dot-stuffing and kept for the session (within the memory budget
// and the size bound), and go-smtp is handed the end-of-data line alone,
// which ends its reader at once. BDAT chunks, which go-smtp reads in
// blocks itself, are left to it.

// bodyBlock is how much of a body is read at a time.
const bodyBlock = 64 << 10

// endOfData is what go-smtp is handed in place of a body: it ends its
// reader, which starts at the beginning of a line.
const endOfData = ".\r\n"

// body is a DATA body read by the connection, or why it could not be
// kept.
type body struct {
	msg *message // nil when err is set
	err error    // errBudget, smtp.ErrDataTooLarge, or a read error
}

// bodyReader keeps the content of a body, within the size bound.
type bodyReader struct {
	data  smtpdata.Scanner
	out   io.Writer // nil once writing failed: the rest is only scanned
	err   error
	size  int64
	limit int64 // past it, the rest is only scanned; 0: no bound
}

// emit passes content on, within the size bound.
func (b *bodyReader) emit(p []byte) {
	if b.out == nil || len(p) == 0 {
		return
	}
	b.size += int64(len(p))
	if b.limit > 0 && b.size > b.limit {
		b.out, b.err = nil, smtp.ErrDataTooLarge
		return
	}
	if _, err := b.out.Write(p); err != nil {
		b.out, b.err = nil, err
	}
}

// scan takes the next bytes of the body. It returns how many of them
// belong to it, the end-of-data line included, and whether that line was
// among them.
func (b *bodyReader) scan(p []byte) (int, bool) {
	return b.data.Scan(p, b.emit)
}

// lmtpConn is an LMTP connection from Postfix: it is counted among the
// open ones, and reads DATA bodies in blocks.
type lmtpConn struct {
	net.Conn
	c    *conns
	once sync.Once

	t       *Transport
	mu      sync.Mutex
	inBody  bool   // the server wrote 354: the body comes next
	pending []byte // for go-smtp, after a body: its end, then what followed
	got     *body  // the last body read, until the session takes it
}

// Write passes what the server writes on; a 354 says that a body comes.
func (lc *lmtpConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("354 ")) {
		lc.mu.Lock()
		lc.inBody = true
		lc.mu.Unlock()
	}
	return lc.Conn.Write(p)
}

// Read hands go-smtp what it is to read: commands as they come, and in
// place of a body its end.
func (lc *lmtpConn) Read(p []byte) (int, error) {
	lc.mu.Lock()
	if len(lc.pending) > 0 {
		n := copy(p, lc.pending)
		lc.pending = lc.pending[n:]
		lc.mu.Unlock()
		return n, nil
	}
	inBody := lc.inBody
	lc.mu.Unlock()
	if !inBody {
		return lc.Conn.Read(p)
	}
	got, rest, err := lc.readBody()
	lc.mu.Lock()
	lc.inBody = false
	lc.got = got
	lc.pending = append([]byte(endOfData), rest...)
	lc.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return lc.Read(p)
}

// readBody reads a body to its end, in blocks, each read within the
// server's read timeout. It returns the body and the bytes that came
// after its end.
func (lc *lmtpConn) readBody() (*body, []byte, error) {
	msg := newMessage(lc.t.budget)
	br := &bodyReader{out: msg, limit: lc.t.o.MaxMessageBytes}
	buf := make([]byte, bodyBlock)
	for {
		lc.Conn.SetReadDeadline(time.Now().Add(lmtpReadTimeout))
		n, err := lc.Conn.Read(buf)
		if n > 0 {
			if k, done := br.scan(buf[:n]); done {
				rest := bytes.Clone(buf[k:n])
				if br.err != nil {
					msg.release()
					return &body{err: br.err}, rest, nil
				}
				return &body{msg: msg}, rest, nil
			}
		}
		if err != nil {
			msg.release()
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
	}
}

// takeBody returns the body read since the last call, or nil when go-smtp
// read the message itself (BDAT).
func (lc *lmtpConn) takeBody() *body {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	got := lc.got
	lc.got = nil
	return got
}

// Close leaves the open connections, gives back a body no session took,
// and closes the connection.
func (lc *lmtpConn) Close() error {
	lc.once.Do(func() {
		lc.c.mu.Lock()
		delete(lc.c.open, lc)
		lc.c.mu.Unlock()
		if b := lc.takeBody(); b != nil && b.msg != nil {
			b.msg.release()
		}
	})
	return lc.Conn.Close()
}
