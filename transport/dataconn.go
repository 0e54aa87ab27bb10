package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
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
// open ones, reads DATA bodies in blocks, and answers BDAT itself.
type lmtpConn struct {
	net.Conn
	c    *conns
	once sync.Once

	t       *Transport
	in      []byte // read from Postfix, not yet looked at
	err     error  // the read error that ends in
	midLine bool   // in ends inside an overlong line, handed on in pieces
	buf     [4096]byte

	mu      sync.Mutex
	inBody  bool   // the server wrote 354: the body comes next
	pending []byte // for go-smtp: a command line, or a body's end
	got     *body  // the last body read, until the session takes it
}

// chunkingLine is go-smtp's LHLO line for CHUNKING, which the transport
// does not offer (see refuseBDAT).
const chunkingLine = "250-CHUNKING\r\n"

// Write passes what the server writes on, but the CHUNKING line of the
// LHLO reply; a 354 says that a body comes.
func (lc *lmtpConn) Write(p []byte) (int, error) {
	if string(p) == chunkingLine {
		return len(p), nil
	}
	if bytes.HasPrefix(p, []byte("354 ")) {
		lc.mu.Lock()
		lc.inBody = true
		lc.mu.Unlock()
	}
	return lc.Conn.Write(p)
}

// Read hands go-smtp what it is to read: commands a line at a time, and
// in place of a body its end.
func (lc *lmtpConn) Read(p []byte) (int, error) {
	for {
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
			if err := lc.nextCommand(); err != nil {
				return 0, err
			}
			continue
		}
		got, err := lc.readBody()
		lc.mu.Lock()
		lc.inBody = false
		lc.got = got
		lc.pending = []byte(endOfData)
		lc.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
}

// nextCommand moves the next command line from in to pending, reading
// more as needed; a line longer than a read goes on in pieces, for
// go-smtp to refuse. A BDAT command it answers itself.
func (lc *lmtpConn) nextCommand() error {
	for {
		i := bytes.IndexByte(lc.in, '\n')
		if i < 0 && len(lc.in) < len(lc.buf) {
			if lc.err == nil {
				lc.readMore()
				continue
			}
			if len(lc.in) == 0 {
				return lc.err
			}
		}
		end := len(lc.in)
		if i >= 0 {
			end = i + 1
		}
		line := lc.in[:end]
		lc.in = lc.in[end:]
		start := !lc.midLine
		lc.midLine = i < 0
		if start && i >= 0 && isBDAT(line) {
			if err := lc.refuseBDAT(string(line)); err != nil {
				return err
			}
			continue
		}
		lc.mu.Lock()
		lc.pending = append(lc.pending, line...)
		lc.mu.Unlock()
		return nil
	}
}

// readMore reads from Postfix into in, within the server's read timeout.
func (lc *lmtpConn) readMore() {
	lc.Conn.SetReadDeadline(time.Now().Add(lmtpReadTimeout))
	n, err := lc.Conn.Read(lc.buf[:])
	lc.in, lc.err = append(lc.in, lc.buf[:n]...), err
}

// isBDAT reports whether a command line is a BDAT command.
func isBDAT(line []byte) bool {
	return len(line) >= 5 && bytes.EqualFold(line[:4], []byte("BDAT")) &&
		(line[4] == ' ' || line[4] == '\t' || line[4] == '\r' || line[4] == '\n')
}

// refuseBDAT answers a BDAT command with 502 once its chunk is read past.
// Postfix's LMTP client never sends BDAT, and go-smtp, which runs a BDAT
// message's Data on a goroutine of its own, may end the session before
// that goroutine has found it. The LHLO reply does not offer CHUNKING.
func (lc *lmtpConn) refuseBDAT(line string) error {
	reply := "502 5.5.1 BDAT not supported, use DATA\r\n"
	var size uint64
	err := errors.New("no size")
	if f := strings.Fields(line); len(f) == 2 || len(f) == 3 {
		size, err = strconv.ParseUint(f[1], 10, 63)
	}
	if err != nil {
		reply, size = "501 5.5.4 Malformed BDAT command\r\n", 0
	}
	for size > 0 {
		if len(lc.in) == 0 {
			if lc.err != nil {
				return lc.err
			}
			lc.readMore()
			continue
		}
		k := int(min(size, uint64(len(lc.in))))
		lc.in, size = lc.in[k:], size-uint64(k)
	}
	lc.Conn.SetWriteDeadline(time.Now().Add(lmtpWriteTimeout))
	_, err = lc.Conn.Write([]byte(reply))
	return err
}

// readBody reads a body to its end, in blocks, each read within the
// server's read timeout, starting with what in holds. It returns the
// body, and leaves in in what came after its end.
func (lc *lmtpConn) readBody() (*body, error) {
	msg := newMessage(lc.t.budget)
	br := &bodyReader{out: msg, limit: lc.t.o.MaxMessageBytes}
	buf := make([]byte, bodyBlock)
	for {
		n := copy(buf, lc.in)
		lc.in = lc.in[n:]
		if n == 0 {
			if lc.err != nil {
				msg.release()
				if errors.Is(lc.err, io.EOF) {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, lc.err
			}
			lc.Conn.SetReadDeadline(time.Now().Add(lmtpReadTimeout))
			n, lc.err = lc.Conn.Read(buf)
		}
		if k, done := br.scan(buf[:n]); done {
			lc.in = append(bytes.Clone(buf[k:n]), lc.in...)
			if br.err != nil {
				msg.release()
				return &body{err: br.err}, nil
			}
			return &body{msg: msg}, nil
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
