package postfix

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/smtpdata"
)

// Sizes of a body on its way to Postfix.
const (
	// chunkSize is the BDAT chunk filtermail sends once it has that much
	// of a body.
	chunkSize = 64 << 10
	// chunkWindow is how many chunks may wait for their replies:
	// Postfix's replies never fill the socket buffer.
	chunkWindow = 8
	// flushAfter is how long body bytes wait for more before they are
	// sent anyway: a slow client's bytes go on at its pace, so that
	// Postfix never waits on filtermail longer than filtermail waits on
	// its client.
	flushAfter = 5 * time.Second
)

// Transaction is one message on its way into Postfix's reinjection smtpd.
// Its envelope goes to Postfix as the client sends it (MAIL with Begin,
// each recipient with Rcpt, Postfix's answers coming back at once), its
// body is streamed in with Write as it arrives, and at the end it is
// committed with Commit, or discarded with Abort, so that Postfix never
// queues a refused message.
//
// Where Postfix offers CHUNKING, the body goes in BDAT chunks, which
// needs no dot-stuffing, and Abort is RSET. Otherwise it goes in DATA,
// and Abort closes the connection before the final dot.
//
// A Transaction is used by one goroutine. Every step has its deadline;
// the context given to Begin ends it.
type Transaction struct {
	r        *Reinjector
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	stops    []func() bool // stop closing conn when a context ends
	ctx      context.Context
	chunking bool
	utf8     bool

	inBody  bool
	buf     []byte // body not yet sent
	sentAt  time.Time
	pending int              // BDAT chunks whose replies are not read yet
	dot     *smtpdata.Writer // the body, in DATA
	err     error            // the transaction failed; nothing more is sent
	done    bool
}

// errEnded is the error of a transaction used after it was committed or
// aborted.
var errEnded = &Error{ErrBroken, errors.New("transaction already ended")}

// Begin connects to Postfix and starts a transaction with MAIL FROM. Its
// error is an *Error: Postfix's own refusal of MAIL, or 451 when Postfix
// could not be reached. ctx bounds the whole transaction: when it ends,
// the connection is closed.
func (r *Reinjector) Begin(ctx context.Context, from string, opts *smtp.MailOptions) (*Transaction, error) {
	for l := r.idle.take(); l != nil; l = r.idle.take() {
		t := r.transaction(ctx, l)
		err := t.command("MAIL", mailCommand(from, opts, t.utf8))
		if err == nil {
			return t, nil
		}
		t.close()
		var perr *Error
		if errors.As(err, &perr) && perr.Reply != ErrBroken {
			return nil, err
		}
		// Postfix dropped the connection while it was kept: another.
	}
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		return nil, &Error{ErrUnreachable, err}
	}
	t := r.transaction(ctx, &link{conn: conn, br: bufio.NewReaderSize(conn, maxReplyLine), bw: bufio.NewWriterSize(conn, 4096)})
	if err := t.hello(); err != nil {
		t.close()
		return nil, &Error{ErrUnreachable, fmt.Errorf("greeting: %w", t.cause(err))}
	}
	if err := t.command("MAIL", mailCommand(from, opts, t.utf8)); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// transaction starts a transaction on l, bound by ctx: when ctx ends,
// the connection is closed, which ends any read or write.
func (r *Reinjector) transaction(ctx context.Context, l *link) *Transaction {
	t := &Transaction{r: r, conn: l.conn, br: l.br, bw: l.bw, chunking: l.chunking, utf8: l.utf8, ctx: ctx}
	t.stops = []func() bool{context.AfterFunc(ctx, func() { l.conn.Close() })}
	return t
}

// hello reads the greeting and says EHLO; it takes note of CHUNKING and
// SMTPUTF8.
func (t *Transaction) hello() error {
	t.conn.SetDeadline(time.Now().Add(commandTimeout))
	if reply, err := readReply(t.br); err != nil {
		return err
	} else if reply.Code != 220 {
		return reply
	}
	t.bw.WriteString("EHLO localhost\r\n")
	if err := t.bw.Flush(); err != nil {
		return err
	}
	reply, err := readReply(t.br)
	if err != nil {
		return err
	}
	if reply.Code != 250 {
		return reply
	}
	for _, line := range strings.Split(reply.Message, "\n")[1:] {
		switch kw, _, _ := strings.Cut(strings.ToUpper(line), " "); kw {
		case "CHUNKING":
			t.chunking = true
		case "SMTPUTF8":
			t.utf8 = true
		}
	}
	return nil
}

// mailCommand is MAIL FROM with the parameters of opts that Postfix is to
// keep: the size the client announced, SMTPUTF8 where Postfix takes it
// (an ASCII envelope goes through without the flag, and Postfix answers
// for an address it cannot take), and the DSN parameters.
func mailCommand(from string, opts *smtp.MailOptions, utf8 bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "MAIL FROM:<%s> BODY=8BITMIME", from)
	if opts == nil {
		return b.String()
	}
	if opts.Size > 0 {
		fmt.Fprintf(&b, " SIZE=%d", opts.Size)
	}
	if opts.UTF8 && utf8 {
		b.WriteString(" SMTPUTF8")
	}
	switch opts.Return {
	case smtp.DSNReturnFull, smtp.DSNReturnHeaders:
		fmt.Fprintf(&b, " RET=%s", opts.Return)
	}
	if id := opts.EnvelopeID; id != "" && printableASCII(id) {
		fmt.Fprintf(&b, " ENVID=%s", xtext(id))
	}
	return b.String()
}

// Rcpt adds a recipient. Its error is an *Error with Postfix's answer
// for that recipient, after which the transaction goes on without it; or
// with 451 when the connection broke, which ends the transaction.
func (t *Transaction) Rcpt(to string) error {
	return t.command("RCPT", "RCPT TO:<"+to+">")
}

// Restart puts a new envelope on the transaction before its body: RSET,
// MAIL FROM from with opts, and RCPT for each of to. Any refusal ends the
// transaction: a recipient told 250 before is not to be dropped quietly.
func (t *Transaction) Restart(from string, opts *smtp.MailOptions, to []string) error {
	if t.inBody {
		return t.fail(errors.New("new envelope after the body began"))
	}
	if err := t.command("RSET", "RSET"); err != nil {
		return t.fail(err)
	}
	if err := t.command("MAIL", mailCommand(from, opts, t.utf8)); err != nil {
		return t.fail(err)
	}
	for _, rcpt := range to {
		if err := t.Rcpt(rcpt); err != nil {
			return t.fail(err)
		}
	}
	return nil
}

// command sends one command and reads its reply; a reply other than 250
// comes back as an *Error with Postfix's reply.
func (t *Transaction) command(stage, line string) error {
	if t.done {
		return errEnded
	}
	if t.err != nil {
		return t.err
	}
	if strings.ContainsAny(line, "\r\n") {
		return &Error{ErrBroken, fmt.Errorf("%s: line break in the command", stage)}
	}
	t.conn.SetDeadline(time.Now().Add(commandTimeout))
	t.bw.WriteString(line)
	t.bw.WriteString("\r\n")
	if err := t.bw.Flush(); err != nil {
		return t.fail(&Error{ErrBroken, fmt.Errorf("%s: %w", stage, t.cause(err))})
	}
	reply, err := readReply(t.br)
	if err != nil {
		return t.fail(&Error{ErrBroken, fmt.Errorf("%s: %w", stage, t.cause(err))})
	}
	if reply.Code != 250 {
		err := transactionError(stage, reply)
		if reply.Code == 421 {
			t.fail(err)
		}
		return err
	}
	return nil
}

// Write adds the next bytes of the body. They are sent in chunks, at the
// latest flushAfter after they came; a write that fails ends the
// transaction, and Commit then says why.
func (t *Transaction) Write(p []byte) (int, error) {
	if t.done {
		return 0, errEnded
	}
	if t.err != nil {
		return 0, t.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !t.inBody {
		if err := t.startBody(); err != nil {
			return 0, err
		}
	}
	if t.chunking {
		t.buf = append(t.buf, p...)
		if len(t.buf) >= chunkSize || time.Since(t.sentAt) > flushAfter {
			if err := t.sendChunk(false); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	// The buffer goes out whenever it is full, and when it waited long
	// enough.
	t.conn.SetDeadline(time.Now().Add(dataTimeout))
	_, err := t.dot.Write(p)
	if err == nil && time.Since(t.sentAt) > flushAfter {
		err = t.bw.Flush()
		t.sentAt = time.Now()
	}
	if err != nil {
		return 0, t.fail(&Error{ErrBroken, fmt.Errorf("sending message: %w", t.cause(err))})
	}
	return len(p), nil
}

// startBody sends DATA where Postfix does not take BDAT.
func (t *Transaction) startBody() error {
	t.inBody, t.sentAt = true, time.Now()
	if t.chunking {
		t.buf = t.r.chunks.get()
		return nil
	}
	t.conn.SetDeadline(time.Now().Add(commandTimeout))
	t.bw.WriteString("DATA\r\n")
	if err := t.bw.Flush(); err != nil {
		return t.fail(&Error{ErrBroken, fmt.Errorf("DATA: %w", t.cause(err))})
	}
	reply, err := readReply(t.br)
	if err != nil {
		return t.fail(&Error{ErrBroken, fmt.Errorf("DATA: %w", t.cause(err))})
	}
	if reply.Code != 354 {
		return t.fail(transactionError("DATA", reply))
	}
	t.bw = bufio.NewWriterSize(t.conn, chunkSize)
	t.dot = smtpdata.NewWriter(t.bw)
	return nil
}

// bodyWriteMax is room for one more write beyond a full chunk, so that the
// chunk buffer rarely grows.
const bodyWriteMax = 64 << 10

// sendChunk sends the bytes held as one BDAT chunk, LAST if last. It
// reads the replies of earlier chunks where more than chunkWindow wait.
func (t *Transaction) sendChunk(last bool) error {
	for t.pending >= chunkWindow {
		if err := t.chunkReply(); err != nil {
			return err
		}
	}
	t.conn.SetDeadline(time.Now().Add(dataTimeout))
	cmd := fmt.Sprintf("BDAT %d", len(t.buf))
	if last {
		cmd += " LAST"
	}
	bufs := net.Buffers{[]byte(cmd + "\r\n"), t.buf}
	if _, err := bufs.WriteTo(t.conn); err != nil {
		return t.fail(&Error{ErrBroken, fmt.Errorf("sending message: %w", t.cause(err))})
	}
	t.buf, t.sentAt = t.buf[:0], time.Now()
	t.pending++
	return nil
}

// chunkReply reads the reply to the oldest chunk waiting for one.
func (t *Transaction) chunkReply() error {
	t.conn.SetReadDeadline(time.Now().Add(dataTimeout))
	reply, err := readReply(t.br)
	if err != nil {
		return t.fail(&Error{ErrBroken, fmt.Errorf("BDAT: %w", t.cause(err))})
	}
	t.pending--
	if reply.Code != 250 {
		return t.fail(transactionError("BDAT", reply))
	}
	return nil
}

// Commit ends the body and returns Postfix's answer: nil once Postfix has
// the message, else an *Error whose Reply goes to the client. ctx bounds
// the wait. The connection is closed either way.
func (t *Transaction) Commit(ctx context.Context) error {
	if t.done {
		return errEnded
	}
	stop := context.AfterFunc(ctx, func() { t.conn.Close() })
	err := t.commit()
	open := stop()
	if err != nil {
		t.close()
		if ctx.Err() != nil {
			return &Error{ErrBroken, fmt.Errorf("hand-over not done in time: %w", err)}
		}
		return err
	}
	t.done = true
	if !open || !t.keep() {
		t.quit()
		t.close()
	}
	return nil
}

// keep puts the connection of a committed transaction with the idle
// ones, and reports whether it did.
func (t *Transaction) keep() bool {
	if !t.stop() {
		return false // a context of the transaction closed it
	}
	t.conn.SetDeadline(time.Time{})
	l := &link{conn: t.conn, br: t.br, bw: t.bw, chunking: t.chunking, utf8: t.utf8}
	if t.bw.Buffered() > 0 || t.br.Buffered() > 0 || !t.r.idle.put(l) {
		return false
	}
	t.releaseBuffer()
	return true
}

func (t *Transaction) commit() error {
	if t.err != nil {
		return t.err
	}
	if !t.inBody {
		if err := t.startBody(); err != nil {
			return err
		}
	}
	if !t.chunking {
		t.conn.SetDeadline(time.Now().Add(dataTimeout))
		t.dot.End()
		if err := t.bw.Flush(); err != nil {
			return t.fail(&Error{ErrBroken, fmt.Errorf("sending message: %w", t.cause(err))})
		}
		return t.finalReply()
	}
	if err := t.sendChunk(true); err != nil {
		return err
	}
	for t.pending > 1 {
		if err := t.chunkReply(); err != nil {
			return err
		}
	}
	t.pending = 0
	return t.finalReply()
}

// finalReply reads Postfix's answer to the whole message.
func (t *Transaction) finalReply() error {
	t.conn.SetDeadline(time.Now().Add(dataTimeout))
	reply, err := readReply(t.br)
	if err != nil {
		return t.fail(&Error{ErrBroken, fmt.Errorf("end of data: %w", t.cause(err))})
	}
	if reply.Code != 250 {
		return t.fail(transactionError("end of data", reply))
	}
	return nil
}

// Abort discards the transaction: Postfix queues nothing of it. It may be
// called at any time, and more than once.
//
// Before the body, and in BDAT, that is RSET: Postfix drops the envelope
// and the chunks it has. A connection whose transaction ended before its
// body is kept for the next; one that carried chunks is closed once
// Postfix has answered them and the RSET (go-smtp's server, for one,
// may still be busy with the aborted chunks when the next transaction
// comes). In DATA, closing before the final dot is the only way; so it
// is wherever the connection failed.
func (t *Transaction) Abort() {
	if t.done {
		return
	}
	t.done = true
	if t.err == nil && (!t.inBody || t.chunking) && t.reset() && !t.inBody && t.stop() {
		t.conn.SetDeadline(time.Time{})
		if t.r.idle.put(&link{conn: t.conn, br: t.br, bw: t.bw, chunking: t.chunking, utf8: t.utf8}) {
			t.releaseBuffer()
			return
		}
	}
	if t.inBody && t.chunking && t.err == nil {
		t.quit()
	}
	t.close()
}

// reset sends RSET and reads the replies still due, the chunks' and its
// own; it reports whether all came and the last was 250.
func (t *Transaction) reset() bool {
	t.conn.SetDeadline(time.Now().Add(commandTimeout))
	t.bw.WriteString("RSET\r\n")
	if t.bw.Flush() != nil {
		return false
	}
	for ; t.pending > 0; t.pending-- {
		if _, err := readReply(t.br); err != nil {
			return false
		}
	}
	reply, err := readReply(t.br)
	return err == nil && reply.Code == 250 && t.br.Buffered() == 0
}

// quit says goodbye after a committed message, without waiting long.
func (t *Transaction) quit() {
	t.conn.SetDeadline(time.Now().Add(time.Second))
	t.bw.WriteString("QUIT\r\n")
	t.bw.Flush()
}

// Bound ends the transaction when ctx ends, whatever it is doing then:
// for the time from the end of the client's message to the answer.
func (t *Transaction) Bound(ctx context.Context) {
	t.stops = append(t.stops, context.AfterFunc(ctx, func() { t.conn.Close() }))
}

// stop stops the contexts from closing the connection, and reports
// whether none had.
func (t *Transaction) stop() bool {
	open := true
	for _, stop := range t.stops {
		open = stop() && open
	}
	t.stops = nil
	return open
}

func (t *Transaction) close() {
	t.stop()
	t.conn.Close()
	t.releaseBuffer()
}

// releaseBuffer gives the chunk buffer back.
func (t *Transaction) releaseBuffer() {
	if t.buf != nil {
		t.r.chunks.put(t.buf)
		t.buf = nil
	}
}

// chunkPool keeps the buffers BDAT chunks are gathered in, for the next
// message.
type chunkPool struct{ p sync.Pool }

func (cp *chunkPool) get() []byte {
	if b, ok := cp.p.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, chunkSize+bodyWriteMax)
}

func (cp *chunkPool) put(b []byte) {
	if cap(b) == chunkSize+bodyWriteMax {
		cp.p.Put(&b)
	}
}

// fail ends the transaction with err, which it returns.
func (t *Transaction) fail(err error) error {
	if t.err == nil {
		t.err = err
	}
	return t.err
}

// cause is err, or that the transaction's time ran out when that closed
// the connection.
func (t *Transaction) cause(err error) error {
	if t.ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", t.ctx.Err(), err)
	}
	return err
}

// printableASCII reports whether s is printable US-ASCII, as RFC 3461
// wants ENVID.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// xtext encodes s as RFC 3461 xtext.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}
