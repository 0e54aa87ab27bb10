package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-smtp"

	"filtermail/filter"
)

// session is one SMTP connection's transaction state.
type session struct {
	s    *Server
	from string
	opts *smtp.MailOptions
	to   []string
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.Reset()
	if ss.s.dir == Outgoing {
		if !filter.ValidSender(from) {
			return reply(500, "Invalid from address <%s>", from)
		}
		if !ss.s.limiter.Allow(from) {
			ss.s.log.Printf("Rate limit reached by a sender.")
			return reply(450, "4.7.1: Too much mail from <%s>", from)
		}
	}
	ss.from, ss.opts = from, opts
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
		return err
	}
	return ss.s.handle(ss.from, ss.opts, ss.to, &msg)
}

func (ss *session) Reset() {
	ss.from, ss.opts, ss.to = "", nil, nil
}

func (ss *session) Logout() error { return nil }

// reply is an SMTP reply whose text is exactly as given, without an added
// enhanced status code: the relay's replies, kept as they are.
func reply(code int, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: fmt.Sprintf(format, args...)}
}

var (
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
	if s.dir == Outgoing {
		v = s.policy.Outgoing(env, m)
	} else {
		var err error
		if v, err = s.policy.Incoming(env, m); err != nil {
			s.log.Printf("%s: %v", s.dir.Title(), err)
			return errLookupFailed
		}
	}

	if v.Reason == filter.ForgedFrom {
		s.log.Printf("%s: Rejected mail whose From header is not the sender.", s.dir.Title())
		return reply(500, "Invalid FROM <%s> for <%s>", m.From, from)
	}
	if v.Encrypted() {
		s.log.Printf("%s: Filtering encrypted mail.", s.dir.Title())
	} else {
		s.log.Printf("%s: Filtering unencrypted mail.", s.dir.Title())
	}
	if !v.Pass {
		s.log.Printf("Rejected unencrypted mail.")
		return errEncryptionNeeded
	}

	if opts != nil {
		o := *opts
		o.Size = msg.Len()
		opts = &o
	}
	// Reinjection is not cancelled on shutdown: mail in flight is finished.
	err := s.reinject.send(context.Background(), from, opts, to, msg.Reader())
	var rerr *reinjectError
	if errors.As(err, &rerr) {
		s.log.Printf("%s: Reinjection failed: %v", s.dir.Title(), rerr.Err)
		return rerr.Reply
	}
	return err
}
