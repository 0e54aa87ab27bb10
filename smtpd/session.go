package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/filter"
	"filtermail/metrics"
)

// session is one SMTP connection's transaction state.
type session struct {
	s    *Server
	inTx bool // a MAIL was accepted and the transaction is open
	from string
	opts *smtp.MailOptions
	to   []string
}

// Mail starts a transaction. A MAIL inside an open transaction is refused,
// as Postfix refuses it, and the transaction goes on as it was: go-smtp
// keeps its sender and recipients whatever the session answers.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.inTx {
		return errNestedMail
	}
	if ss.s.dir == Outgoing {
		if !filter.ValidSender(from) {
			ss.s.metrics.Message(metrics.Refuse, string(filter.BadSender))
			ss.s.log.Printf("%s: %s (%s) at MAIL FROM.", ss.s.dir.Title(), metrics.Refuse, filter.BadSender)
			return reply(500, "Invalid from address <%s>", from)
		}
		if !ss.s.limiter.Allow(from) {
			ss.s.metrics.RateLimited()
			ss.s.log.Printf("Rate limit reached by a sender.")
			return reply(450, "4.7.1: Too much mail from <%s>", from)
		}
	}
	ss.inTx, ss.from, ss.opts = true, from, opts
	return nil
}

// Rcpt accepts every recipient; its parameters never reach here (see
// paramConn).
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var msg messageBuffer
	if _, err := msg.ReadFrom(r); err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			ss.s.metrics.Message(metrics.Refuse, metrics.ReasonTooLarge)
			ss.s.log.Printf("%s: refuse (%s), over %d bytes, %d recipients.", ss.s.dir.Title(), metrics.ReasonTooLarge, ss.s.smtp.MaxMessageBytes, len(ss.to))
		}
		return err
	}
	start := time.Now()
	ss.s.metrics.Received(msg.Len(), len(ss.to))
	err := ss.s.handle(ss.from, ss.opts, ss.to, &msg)
	ss.s.metrics.Processed(time.Since(start))
	return err
}

func (ss *session) Reset() {
	ss.inTx, ss.from, ss.opts, ss.to = false, "", nil, nil
}

func (ss *session) Logout() error { return nil }

// reply is an SMTP reply whose text is exactly as given, without an added
// enhanced status code: the relay's replies, kept as they are.
func reply(code int, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: fmt.Sprintf(format, args...)}
}

var (
	errNestedMail       = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: nested MAIL command"}
	errEncryptionNeeded = reply(523, "Encryption Needed: Invalid Unencrypted Mail")
	errLookupFailed     = &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message:      "Cannot look up recipient settings, try again later",
	}
)

// handle judges one message and reinjects it when it passes.
func (s *Server) handle(from string, opts *smtp.MailOptions, to []string, msg *messageBuffer) error {
	env := filter.Envelope{From: from, To: to}
	m := filter.ReadMessage(msg.Reader())
	var v filter.Verdict
	policy := s.policy.Load()
	if s.dir == Outgoing {
		v = policy.Outgoing(env, m)
	} else {
		var err error
		if v, err = policy.Incoming(env, m); err != nil {
			s.metrics.Message(metrics.Tempfail, metrics.ReasonLookupFailed)
			s.log.Printf("%s: tempfail (%s), %d bytes, %d recipients: %v", s.dir.Title(), metrics.ReasonLookupFailed, msg.Len(), len(to), err)
			return errLookupFailed
		}
	}
	s.decided(v, m, msg.Len(), len(to))

	switch {
	case v.Reason == filter.BadSender:
		return reply(500, "Invalid from address <%s>", from)
	case v.Reason == filter.ForgedFrom:
		return reply(500, "Invalid FROM <%s> for <%s>", m.From, from)
	case !v.Pass:
		return errEncryptionNeeded
	}

	if opts != nil {
		o := *opts
		o.Size = msg.Len()
		opts = &o
	}
	// Reinjection is not cancelled on shutdown: mail in flight is finished.
	start := time.Now()
	err := s.reinject.send(context.Background(), from, opts, to, msg.Reader())
	s.metrics.Reinject(reinjectResult(err), time.Since(start))
	var rerr *reinjectError
	if errors.As(err, &rerr) {
		s.log.Printf("%s: Reinjection failed: %v", s.dir.Title(), rerr.Err)
		return rerr.Reply
	}
	s.debugf("%s: Reinjected in %v.", s.dir.Title(), time.Since(start).Round(time.Millisecond))
	return err
}

// decided counts and logs a verdict: the relay's lines that mtail setups
// count, and one line with the verdict, the rule and the size.
func (s *Server) decided(v filter.Verdict, m *filter.Message, size int64, recipients int) {
	verdict := metrics.Refuse
	if v.Pass {
		verdict = metrics.Pass
	}
	s.metrics.Message(verdict, string(v.Reason))
	if v.Reason == filter.Encrypted {
		s.metrics.SEIPD(m.Packets.SEIPDVersion)
	}
	title := s.dir.Title()
	switch {
	case v.Reason == filter.ForgedFrom:
		s.log.Printf("%s: Rejected mail whose From header is not the sender.", title)
	case v.Encrypted():
		s.log.Printf("%s: Filtering encrypted mail.", title)
	default:
		s.log.Printf("%s: Filtering unencrypted mail.", title)
	}
	if v.Reason == filter.Unencrypted {
		s.log.Printf("Rejected unencrypted mail.")
	}
	s.log.Printf("%s: %s (%s), %d bytes, %d recipients.", title, verdict, v.Reason, size, recipients)
	if v.Reason == filter.Encrypted {
		s.debugf("%s: SEIPD v%d, %d key packets, legacy headers %v, partial lengths %v.", title,
			m.Packets.SEIPDVersion, m.Packets.ESKs, m.Packets.Legacy, m.Packets.Partial)
	}
}

// reinjectResult is the metrics label for the outcome of a reinjection.
func reinjectResult(err error) string {
	var rerr *reinjectError
	switch {
	case err == nil:
		return metrics.ReinjectOK
	case !errors.As(err, &rerr):
		return metrics.ReinjectBroken
	case rerr.Reply == errReinjectUnreachable:
		return metrics.ReinjectUnreachable
	case rerr.Reply == errReinjectBroken:
		return metrics.ReinjectBroken
	case rerr.Reply.Code < 500:
		return metrics.ReinjectRefused4xx
	}
	return metrics.ReinjectRefused5xx
}
