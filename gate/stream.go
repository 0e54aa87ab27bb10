package gate

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/dkim"
	"filtermail/filter"
	"filtermail/metrics"
)

// Sizes of a message on its way through the gate.
const (
	// blockSize is how much of a message is read at a time.
	blockSize = 64 << 10
	// maxHeldHeader bounds the header held back from Postfix until its
	// end, as the verdict bounds a header (filter.MaxHeaderBytes): a
	// longer one is not read, and its message is refused.
	maxHeldHeader = filter.MaxHeaderBytes
)

// judgement is the verdict of package filter on a message.
type judgement struct {
	m   *filter.Message
	v   filter.Verdict
	err error // the marker files could not be looked up
}

// Data streams the message from body to Postfix while it judges it, and
// returns the reply for the client: nil once Postfix has the message
// (or, incoming, when every recipient's account is disabled and the
// message is dropped), a *ReadError when body could not be read to its
// end, and otherwise the *smtp.SMTPError the client is to hear: 5xx for a
// refusal, 4xx for a fault that a later try may not meet.
//
// The message is read once, in blocks, and each block goes to the
// judges (package filter; incoming, DKIM) and on to Postfix. Incoming,
// the header is held back from Postfix until it ends, for the sender
// that Postfix is to see depends on its From field. What the judges
// refuse before the end is aborted at once; at the end, Postfix's
// transaction is committed only for a message that passed, and aborted
// otherwise, so Postfix never queues a refused message.
func (tx *Tx) Data(body io.Reader) error {
	g := tx.g
	if !tx.begin() {
		return errTransactionEnded
	}
	if len(tx.to) == 0 {
		// Incoming, every recipient Postfix took is disabled: nothing
		// to hand over.
		if tx.handover != nil {
			tx.handover.Abort()
		}
		return tx.dropAll(body)
	}
	if tx.disabled > 0 {
		g.log.Printf("%s: %d of %d recipients disabled, dropped from the envelope.", g.dir.Title(), tx.disabled, tx.disabled+len(tx.to))
	}

	s := tx.newStream()
	defer s.stop()
	size, err := s.run(body)
	if err != nil {
		tx.handover.Abort()
		return &ReadError{err}
	}
	g.metrics.Received(size, len(tx.to))
	// The time that counts is the client's wait: from the end of its
	// message to the reply.
	end := time.Now()
	defer func() { g.metrics.Processed(time.Since(end)) }()
	return tx.finish(s, size)
}

// errTransactionEnded is Data's answer on a transaction that was aborted
// or had its message: the client reset it, and hears nothing of this.
var errTransactionEnded = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: no transaction"}

// dropAll reads a message none of whose recipients gets it.
func (tx *Tx) dropAll(body io.Reader) error {
	size, err := io.Copy(io.Discard, body)
	if err != nil {
		return &ReadError{err}
	}
	tx.g.metrics.Processed(0)
	tx.g.metrics.Received(size, tx.disabled)
	tx.g.outcome(metrics.Dropped, metrics.ReasonDisabled, size, tx.disabled)
	return nil
}

// stream is a message on its way: to the judges and to Postfix.
type stream struct {
	tx *Tx

	lines    lineEnds
	filterW  *io.PipeWriter
	judged   chan judgement
	verdict  *judgement // once judged
	origin   *io.PipeWriter
	checked  chan dkim.Result
	forward  bool // the body goes on to Postfix
	hold     bool // the header is held back from Postfix
	held     []byte
	header   headerEnd
	restart  bool  // incoming: the sender became <> for Postfix
	lost     error // the hand-over failed while the body was sent
	tooLarge bool  // the header was too large to hold

	end    context.Context // from the end of the message on: its deadline
	cancel context.CancelFunc
}

func (tx *Tx) newStream() *stream {
	s := &stream{tx: tx, forward: true, judged: make(chan judgement, 1)}
	s.hold = tx.g.dir == Incoming
	pr, pw := io.Pipe()
	s.filterW = pw
	env := filter.Envelope{From: tx.from, To: tx.to}
	go func() {
		var j judgement
		j.m = filter.ReadMessage(pr)
		pr.CloseWithError(errJudged) // the rest is not wanted
		if tx.g.dir == Outgoing {
			j.v = tx.policy.Outgoing(env, j.m)
		} else {
			j.v, j.err = tx.policy.Incoming(env, j.m)
		}
		s.judged <- j
	}()
	return s
}

// errJudged is what a write to a judge that has decided returns.
var errJudged = errors.New("judged")

// run reads the message from body to its end and returns its size.
func (s *stream) run(body io.Reader) (int64, error) {
	buf := s.tx.g.blocks.get()
	defer s.tx.g.blocks.put(buf)
	var size int64
	for {
		n, err := body.Read(buf)
		if err == io.EOF {
			s.ended()
		}
		if n > 0 {
			size += int64(n)
			s.block(buf[:n])
		}
		if err == io.EOF {
			if s.hold {
				s.headerDone(len(s.held))
			}
			return size, nil
		}
		if err != nil {
			return size, err
		}
	}
}

// ended takes note that the client's message is over: from now on, the
// hand-over has CommitTimeout in all to end, its last bytes, the envelope
// of an incoming message and the DKIM check included, so that the client
// hears the answer within Postfix's smtpd_proxy_timeout.
func (s *stream) ended() {
	s.end, s.cancel = context.WithTimeout(s.tx.ctx, s.tx.g.handover.CommitTimeout())
	s.tx.handover.Bound(s.end)
}

// block passes the next bytes of the message on.
func (s *stream) block(p []byte) {
	s.lines.check(p)
	if s.filterW != nil {
		if _, err := s.filterW.Write(p); err != nil {
			s.filterW = nil
		}
	}
	if s.hold {
		s.held = append(s.held, p...)
		k, done := s.header.scan(p)
		switch {
		case done:
			s.headerDone(len(s.held) - len(p) + k)
		case len(s.held) > maxHeldHeader:
			s.tooLarge = true
			s.hold, s.held = false, nil
			s.abort()
		}
		return
	}
	if s.origin != nil {
		if _, err := s.origin.Write(p); err != nil {
			s.origin = nil
		}
	}
	s.send(p)
	s.early()
}

// headerDone takes the end of the header, at n bytes of what is held:
// it decides the sender Postfix sees, starts the DKIM check, and sends
// what was held.
func (s *stream) headerDone(n int) {
	tx, g := s.tx, s.tx.g
	s.hold = false
	held := s.held
	s.held = nil
	from := filter.HeaderFrom(held[:n])
	if tx.from != "" && !strings.EqualFold(tx.from, from) && s.forward {
		// Incoming mail whose envelope sender is not its From address
		// goes on with the sender <>: no bounce may go there.
		s.restart = true
		if err := tx.handover.Restart("", tx.opts, tx.to); err != nil {
			s.lost, s.forward = err, false
		}
	}
	if g.origin != nil && from != "" {
		pr, pw := io.Pipe()
		s.origin, s.checked = pw, make(chan dkim.Result, 1)
		domain := from[strings.LastIndexByte(from, '@')+1:]
		go func() {
			ctx, cancel := context.WithTimeout(tx.ctx, originTimeout)
			defer cancel()
			res := g.origin.Verify(ctx, pr, domain)
			pr.CloseWithError(errJudged)
			s.checked <- res
		}()
		if _, err := s.origin.Write(held); err != nil {
			s.origin = nil
		}
	}
	s.send(held)
	s.early()
}

// send passes bytes on to Postfix.
func (s *stream) send(p []byte) {
	if !s.forward || len(p) == 0 {
		return
	}
	if _, err := s.tx.handover.Write(p); err != nil {
		s.lost, s.forward = err, false
	}
}

// early takes a verdict that came before the end of the message: a
// refused message is not sent on.
func (s *stream) early() {
	if s.verdict != nil {
		return
	}
	select {
	case j := <-s.judged:
		s.verdict = &j
		s.filterW = nil
		if !j.v.Pass || j.err != nil {
			s.abort()
		}
	default:
	}
}

// abort stops sending the message on and has Postfix discard what it got.
func (s *stream) abort() {
	if s.forward {
		s.forward = false
		s.tx.handover.Abort()
	}
}

// wait ends the judges' input and returns their verdicts: the DKIM
// result is the zero Result when the check did not run.
func (s *stream) wait() (judgement, dkim.Result) {
	s.closeInputs()
	if s.verdict == nil {
		j := <-s.judged
		s.verdict = &j
	}
	var res dkim.Result
	if s.checked != nil {
		select {
		case res = <-s.checked:
		case <-s.end.Done():
			res = dkim.Result{Outcome: dkim.TempFail, Err: errors.New("DKIM check not done in time")}
		}
		s.checked = nil
	}
	return *s.verdict, res
}

// stop ends the stream: the judges' input, and the deadline.
func (s *stream) stop() {
	s.closeInputs()
	if s.cancel != nil {
		s.cancel()
	}
}

// closeInputs closes the judges' input.
func (s *stream) closeInputs() {
	if s.filterW != nil {
		s.filterW.Close()
		s.filterW = nil
	}
	if s.origin != nil {
		s.origin.Close()
		s.origin = nil
	}
}

// finish decides on a message read to its end, and commits or aborts
// its hand-over.
func (tx *Tx) finish(s *stream, size int64) error {
	g := tx.g
	recipients := len(tx.to)
	if !s.lines.ok() {
		s.abort()
		s.wait()
		g.outcome(metrics.Refuse, metrics.ReasonInvalidData, size, recipients)
		return errInvalidData
	}
	j, origin := s.wait()
	if j.err != nil {
		s.abort()
		g.lookupFailed(j.err, size, recipients)
		return errLookupFailed
	}
	v := j.v
	g.logVerdict(v)
	if v.Pass && g.dir == Incoming && g.origin != nil {
		if origin.Outcome == "" {
			// No DKIM check ran: the message has no From address.
			origin = dkim.Result{Outcome: dkim.NoSignature, Err: errors.New("no From address")}
		}
		if err := g.originReply(origin, size, recipients); err != nil {
			s.abort()
			return err
		}
	}
	g.decided(v, j.m, size, recipients)
	switch {
	case v.Reason == filter.BadSender:
		s.abort()
		return errInvalidSender(tx.from)
	case v.Reason == filter.ForgedFrom:
		s.abort()
		return errForgedFrom(j.m.From, tx.from)
	case v.Reason == filter.InvalidFrom:
		s.abort()
		return errInvalidFrom
	case !v.Pass:
		s.abort()
		return errEncryptionNeeded
	}

	if v.NullSender {
		g.log.Printf("%s: envelope sender is not the From address; passed on with the sender <>.", g.dir.Title())
	}
	if s.lost != nil {
		return g.handoverFailed(s.lost, 0)
	}
	postfixFrom, wantFrom := tx.from, tx.from
	if s.restart {
		postfixFrom = ""
	}
	if v.NullSender {
		wantFrom = ""
	}
	if !s.forward || postfixFrom != wantFrom {
		// The message passed, but what Postfix got is not what it
		// passed as: its header was too large to hold, or the sender
		// Postfix has is not the one the verdict wants.
		s.abort()
		g.log.Printf("%s: the hand-over does not match the verdict (header too large: %v); try again.", g.dir.Title(), s.tooLarge)
		return errInternal
	}
	// The hand-over is not cancelled when the filter stops: mail in
	// flight is finished.
	handStart := time.Now()
	if err := tx.handover.Commit(s.end); err != nil {
		return g.handoverFailed(err, time.Since(handStart))
	}
	g.metrics.Reinject(metrics.ReinjectOK, time.Since(handStart))
	g.debugf("%s: Reinjected in %v.", g.dir.Title(), time.Since(handStart).Round(time.Millisecond))
	return nil
}
