package smtpd

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/metrics"
)

// maxCommandLine bounds an SMTP command line, parameters included.
const maxCommandLine = 8192

// drainGrace is how long a connection between transactions may take to
// send its next command once the filter is stopping: enough for the QUIT
// that follows a transaction.
const drainGrace = time.Second

// shutdownReply is the answer to a client that the stopping filter cuts
// off.
const shutdownReply = "421 4.3.2 Service shutting down, try again later\r\n"

// paramListener hands out paramConns and keeps track of them, for the
// metrics and for stopping.
type paramListener struct {
	net.Listener
	m       *metrics.Metrics
	idle    time.Duration // bounds each read of a body
	minRate int           // bytes per second a body must keep up
	limit   int64         // bounds a DATA body
	blocks  blockPool

	// At stressAt connections open, the listener is under stress: a
	// connection waiting for a command gets stressIdle from its last one
	// (see paramConn.readMore), until fewer than 3/4 of stressAt are
	// open.
	stressAt   int
	stressIdle time.Duration
	stressed   atomic.Bool
	log        *log.Logger

	mu       sync.Mutex
	conns    map[*paramConn]struct{}
	draining bool
}

func newParamListener(ln net.Listener, m *metrics.Metrics, idle time.Duration, limit int64) *paramListener {
	return &paramListener{
		Listener: ln, m: m, idle: idle, minRate: minDataRate, limit: limit,
		stressAt: MaxConnections, stressIdle: stressTimeout,
		conns: map[*paramConn]struct{}{},
	}
}

func (l *paramListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &paramConn{Conn: nc, l: l, limit: l.limit, lineAt: time.Now(),
		dataBegun: make(chan struct{}, 1), closed: make(chan struct{})}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	c.draining.Store(l.draining)
	if len(l.conns) >= l.stressAt && !l.stressed.Load() {
		l.stress()
	}
	l.mu.Unlock()
	l.m.ConnectionOpened()
	return c, nil
}

// stress puts the listener under stress and wakes the connections that
// wait for a command, so that their wait is cut to stressIdle. Called
// with l.mu held.
func (l *paramListener) stress() {
	l.stressed.Store(true)
	if l.log != nil {
		l.log.Printf("SMTP connections at the limit (%d): a client gets %v for each command until fewer than %d are open.", l.stressAt, l.stressIdle, l.stressAt*3/4)
	}
	for c := range l.conns {
		if c.waiting.Load() {
			c.Conn.SetReadDeadline(time.Now())
		}
	}
}

// drain makes every connection finish the transaction it is in and then
// end with a 421; connections between transactions end at once.
func (l *paramListener) drain() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.draining = true
	for c := range l.conns {
		c.draining.Store(true)
		// Wake a read that waits for the next command.
		c.Conn.SetReadDeadline(time.Now())
	}
}

// cutOff answers 421 on every connection still open and closes it.
func (l *paramListener) cutOff() {
	l.mu.Lock()
	conns := make([]*paramConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.writeRaw(shutdownReply)
		c.Close()
	}
}

// paramConn is the server side of an SMTP connection, between the client
// and go-smtp. It
//
//   - removes every parameter from RCPT TO commands before go-smtp reads
//     them: Postfix passes on whatever its clients sent (ORCPT, NOTIFY,
//     unknown and malformed ones), and filtermail accepts them all;
//   - counts commands and their replies, and knows whether a transaction
//     is open;
//   - ends the connection with a 421 between transactions when the filter
//     is stopping.
//
// It follows the session closely enough to leave message content alone:
// a DATA body it reads itself, in blocks, for the session (see dataBody),
// and BDAT chunks it passes to go-smtp by their size. Command lines
// longer than maxCommandLine end the connection.
type paramConn struct {
	net.Conn
	l *paramListener

	// Read side, used by go-smtp's connection goroutine only.
	in    []byte // read from the client, not yet looked at
	out   []byte // looked at, ready for go-smtp
	err   error  // the client connection's read error, once it came
	state int
	body  *dataBody // the DATA body being read, in stateData
	chunk uint64    // bytes of the BDAT chunk still to come
	limit int64     // the size bound of a DATA body
	buf   [4096]byte

	// Written by go-smtp's connection goroutine: replies to the commands
	// in pending, in order.
	pending      []command
	replies      replyScanner
	held         []byte      // lines of a multi-line reply not yet written
	dataReady    atomic.Bool // a DATA got 354 and its body has not been started
	inTx         bool        // MAIL was accepted and the transaction is not over
	readDeadline time.Time   // as go-smtp last set it
	lineAt       time.Time   // when the last command line came

	waiting atomic.Bool // reading the next command: stress wakes it

	// BDAT: go-smtp calls the session's Data from a goroutine it starts
	// at a message's first chunk, and may meanwhile go on to reset and
	// end the session (BDAT 0, QUIT): a goroutine that runs late then
	// finds no session and panics. So the read after a BDAT command waits
	// until Data has begun, if go-smtp started it (see awaitData).
	afterBDAT bool          // the last command handed on is a BDAT
	bdatLast  bool          // ... with LAST: go-smtp waits for its Data
	bdatReply int           // go-smtp's reply to it; 0 before it came
	begun     atomic.Bool   // the session's Data began for this message
	dataBegun chan struct{} // a token when it does
	closed    chan struct{} // closed by Close

	draining atomic.Bool
	wmu      sync.Mutex // writes: go-smtp's and a cut-off's 421
	closing  sync.Once
}

// command is a command go-smtp was given, waiting for its reply.
type command struct {
	verb string
	last bool // BDAT ... LAST
}

const (
	stateCommand = iota
	stateAfterDATA
	stateData
	stateChunk
)

func (c *paramConn) Read(p []byte) (int, error) {
	if c.afterBDAT && len(c.out) == 0 {
		c.afterBDAT = false
		if c.bdatReply == 0 || !c.bdatLast && c.bdatReply < 400 {
			c.awaitData()
		}
	}
	for len(c.out) == 0 {
		c.startBody()
		if c.state == stateData {
			// The session did not read the body, or not all of it.
			if err := c.body.discard(); err != nil {
				return 0, err
			}
			continue
		}
		if len(c.in) == 0 && c.err == nil && c.state == stateChunk {
			return c.readChunk(p)
		}
		if c.process() {
			continue
		}
		if c.err != nil {
			if len(c.in) == 0 {
				return 0, c.chunkErr()
			}
			c.out, c.in = append(c.out, c.in...), nil
			break
		}
		if err := c.readMore(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// awaitData waits until the session's Data has begun for the BDAT
// message, bdatStartWait at the most. It is called when go-smtp reads a
// chunk (it has started Data, unanswered), or after a chunk it accepted
// that was not the last. A refused BDAT (a reply before the chunk is
// read) starts no Data, and a LAST one has had its Data run to its end
// when it is answered.
func (c *paramConn) awaitData() {
	if c.dataBegun == nil || c.begun.Load() {
		return // a connection tests made without Accept has no session
	}
	t := time.NewTimer(bdatStartWait)
	defer t.Stop()
	select {
	case <-c.dataBegun:
	case <-c.closed:
	case <-t.C:
	}
}

// bdatStartWait bounds how long a read waits for go-smtp's goroutine to
// call Data: it runs at once but for a machine under heavy load.
const bdatStartWait = 10 * time.Second

// dataBegins tells the connection that the session's Data has begun.
func (c *paramConn) dataBegins() {
	c.begun.Store(true)
	select {
	case c.dataBegun <- struct{}{}:
	default:
	}
}

// dataReset tells the connection that the session was reset: the next
// BDAT message starts a Data of its own.
func (c *paramConn) dataReset() {
	c.begun.Store(false)
	select {
	case <-c.dataBegun:
	default:
	}
}

// startBody moves on from a DATA command once go-smtp has answered it:
// to its body, if the answer was 354. go-smtp answers DATA before it
// reads again.
func (c *paramConn) startBody() {
	if c.state != stateAfterDATA {
		return
	}
	c.state = stateCommand
	if c.dataReady.Swap(false) {
		c.state, c.body = stateData, newDataBody(c, c.limit)
	}
}

// Body returns the DATA body that go-smtp has just answered 354 for, to
// be read by the session within go-smtp's Data call; nil if there is
// none (BDAT). Its Read returns smtp.ErrDataTooLarge at the end of a
// body over the size bound.
func (c *paramConn) Body() io.Reader {
	// For BDAT, go-smtp calls the session from a goroutine of its own:
	// this flag, set on the connection's goroutine when DATA got its
	// 354, is all that is looked at then.
	if !c.dataReady.Load() {
		return nil
	}
	c.startBody()
	if c.state != stateData {
		return nil
	}
	return c.body
}

// readMore reads from the client into c.in. Between transactions of a
// stopping filter it waits drainGrace at most, then answers 421 and ends
// the connection. Under stress, a command has stressIdle from the one
// before, as Postfix's smtpd_timeout under stress: idle clients make room
// for others.
func (c *paramConn) readMore() error {
	idle := c.draining.Load() && c.state == stateCommand && !c.inTx
	// Waiting is set before stress is looked at: stress that comes
	// later wakes the read.
	c.waiting.Store(c.state == stateCommand)
	var stressBy time.Time
	switch {
	case idle:
		c.Conn.SetReadDeadline(time.Now().Add(drainGrace))
	case c.state == stateCommand && c.l.stressed.Load():
		if by := c.lineAt.Add(c.l.stressIdle); c.readDeadline.IsZero() || by.Before(c.readDeadline) {
			stressBy = by
			c.Conn.SetReadDeadline(by)
		}
	}
	n, err := c.Conn.Read(c.buf[:])
	c.waiting.Store(false)
	c.in = append(c.in, c.buf[:n]...)
	if n == 0 && isTimeout(err) && !stressBy.IsZero() && !time.Now().Before(stressBy) {
		c.err = err // go-smtp answers a timeout 421 and ends the connection
		return nil
	}
	if n == 0 && c.woken(err) {
		if !idle {
			return nil // read again, with the grace or under stress
		}
		c.writeRaw(shutdownReply)
		return io.EOF
	}
	c.err = quietError(err)
	return nil
}

// readChunk reads BDAT content straight into p, keeping back what
// follows the chunk.
func (c *paramConn) readChunk(p []byte) (int, error) {
	// go-smtp sets its deadline once, for the whole chunk: each read of
	// it gets its own instead.
	c.SetReadDeadline(time.Now().Add(c.l.idle))
	n, err := c.Conn.Read(p)
	if n == 0 && c.woken(err) {
		return 0, nil
	}
	c.err = quietError(err)
	k := c.chunkPrefix(p[:n])
	c.in = append(c.in, p[k:n]...)
	if k == 0 && c.err != nil && len(c.in) == 0 {
		return 0, c.chunkErr()
	}
	return k, nil
}

// chunkErr is the read error to give go-smtp. A BDAT chunk cut off by the
// end of the connection, a timeout or a failed read gets 421 4.4.2, as a
// DATA body does, and the connection ends: go-smtp copies a chunk with
// io.Copy, which takes io.EOF for the chunk's end (a LAST chunk cut off
// would pass for the whole message), and answers other errors 554.
func (c *paramConn) chunkErr() error {
	if c.state != stateChunk {
		return c.err
	}
	c.state, c.err = stateCommand, io.EOF
	return errBodyBroken
}

// woken reports whether err is a read timeout that is not the read's
// own: drain or stress woke the read, or the drain grace ran out. In a
// transaction, go-smtp's deadline is put back for the next read.
func (c *paramConn) woken(err error) bool {
	if !isTimeout(err) {
		return false
	}
	if c.draining.Load() && c.state == stateCommand && !c.inTx {
		return true
	}
	if !c.readDeadline.IsZero() && !time.Now().Before(c.readDeadline) {
		return false // go-smtp's timeout, or the body's
	}
	c.Conn.SetReadDeadline(c.readDeadline)
	return true
}

// chunkPrefix returns how much of b belongs to the BDAT chunk being read
// and moves to command state when the chunk ends inside b.
func (c *paramConn) chunkPrefix(b []byte) int {
	k := int(min(uint64(len(b)), c.chunk))
	if c.chunk -= uint64(k); c.chunk == 0 {
		c.state = stateCommand
	}
	return k
}

// process moves input to output and reports whether it made progress.
func (c *paramConn) process() bool {
	if len(c.in) == 0 {
		return false
	}
	if c.state == stateChunk {
		k := c.chunkPrefix(c.in)
		c.out = append(c.out, c.in[:k]...)
		c.in = c.in[k:]
		return true
	}
	i := bytes.IndexByte(c.in, '\n')
	if i < 0 {
		if len(c.in) > maxCommandLine {
			c.in, c.err = nil, smtp.ErrTooLongLine
		}
		return false
	}
	line := c.in[:i+1]
	c.in = c.in[i+1:]
	c.lineAt = time.Now()
	verb, arg, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
	verb = strings.ToUpper(verb)
	if c.draining.Load() && !c.inTx && (verb == "MAIL" || verb == "BDAT" || verb == "DATA") {
		// No new transaction on a stopping filter.
		c.writeRaw(shutdownReply)
		c.in, c.err = nil, io.EOF
		return false
	}
	cmd := command{verb: verb}
	switch verb {
	case "RCPT":
		c.out = append(c.out, stripRcptParams(line)...)
	case "DATA":
		c.out = append(c.out, line...)
		c.state = stateAfterDATA
	case "BDAT":
		c.out = append(c.out, line...)
		c.afterBDAT, c.bdatReply = true, 0
		size, ok := chunkSize(arg)
		if ok && size > 0 {
			c.state, c.chunk = stateChunk, size
		}
		cmd.last = ok && strings.HasSuffix(strings.ToUpper(strings.TrimSpace(arg)), "LAST")
		c.bdatLast = cmd.last
	default:
		c.out = append(c.out, line...)
	}
	c.pending = append(c.pending, cmd)
	return true
}

// Write passes go-smtp's replies on to the client. go-smtp writes each
// line of a reply on its own; the lines of a multi-line reply (EHLO's)
// are held until its last line and go out in one write with it.
func (c *paramConn) Write(p []byte) (int, error) {
	c.replies.scan(p, c.replied)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(p) > 0 && p[len(p)-1] == '\n' && c.replies.more && len(c.held)+len(p) <= maxHeldReply {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// maxHeldReply bounds the lines of a multi-line reply held back for one
// write: beyond it, they go out as they come.
const maxHeldReply = 4096

// replied takes note of a reply to the oldest command waiting for one.
func (c *paramConn) replied(code int) {
	if len(c.pending) == 0 {
		return // the greeting, or a reply go-smtp sends on its own
	}
	cmd := c.pending[0]
	c.pending = c.pending[1:]
	c.l.m.Command(cmd.verb, code)
	ok := code >= 200 && code < 400
	switch cmd.verb {
	case "MAIL":
		// A refused MAIL inside a transaction leaves it open.
		c.inTx = c.inTx || ok
	case "DATA":
		c.dataReady.Store(code == 354)
		if code != 354 {
			c.inTx = false
		}
	case metrics.EndOfData, "RSET", "HELO", "EHLO", "LHLO":
		c.inTx = false
	case "BDAT":
		c.bdatReply = code
		if cmd.last || !ok {
			c.inTx = false
		}
	}
}

// writeRaw writes a reply of filtermail's own, outside go-smtp.
func (c *paramConn) writeRaw(reply string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	c.Conn.Write([]byte(reply))
}

// SetReadDeadline and SetDeadline remember go-smtp's read deadline, so
// that a read woken by drain can go on with it.
func (c *paramConn) SetReadDeadline(t time.Time) error {
	c.readDeadline = t
	return c.Conn.SetReadDeadline(t)
}

func (c *paramConn) SetDeadline(t time.Time) error {
	c.readDeadline = t
	return c.Conn.SetDeadline(t)
}

func (c *paramConn) Close() error {
	err := net.ErrClosed
	c.closing.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		if len(c.l.conns) < c.l.stressAt*3/4 {
			c.l.stressed.Store(false)
		}
		c.l.mu.Unlock()
		c.l.m.ConnectionClosed()
		if c.closed != nil {
			close(c.closed)
		}
		err = c.Conn.Close()
	})
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// quietError turns a client's reset of the connection into a plain end of
// input: it is the client's way to leave, not a fault worth a log line.
func quietError(err error) error {
	if errors.Is(err, syscall.ECONNRESET) {
		return io.EOF
	}
	return err
}

// replyScanner finds the final lines of SMTP replies in what the server
// writes, however the writes split them.
type replyScanner struct {
	head [4]byte // the start of the current line
	n    int     // bytes of head filled
	skip bool    // the rest of the line does not matter
	more bool    // the line is a reply's, not its last ("250-...")
}

// scan calls final with the code of each final reply line in p.
func (s *replyScanner) scan(p []byte, final func(code int)) {
	for _, b := range p {
		switch {
		case b == '\n':
			s.n, s.skip = 0, false
		case s.skip:
		default:
			if s.n == 0 {
				s.more = false
			}
			s.head[s.n] = b
			if s.n++; s.n == len(s.head) {
				s.skip = true
				s.more = s.head[3] == '-'
				if s.head[3] == ' ' || s.head[3] == '\r' {
					if code, ok := replyCode(s.head[:3]); ok {
						final(code)
					}
				}
			}
		}
	}
}

func replyCode(b []byte) (int, bool) {
	code := 0
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		code = code*10 + int(d-'0')
	}
	return code, true
}
