package smtpd

import (
	"context"
	"errors"
	"io"

	"github.com/emersion/go-smtp"

	"filtermail/gate"
)

// session is one SMTP connection's transaction state.
type session struct {
	s    *Server
	conn *paramConn
	inTx bool // a MAIL was accepted and the transaction is open
	from string
	opts *smtp.MailOptions
	to   []string
}

var errNestedMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: nested MAIL command"}

// Mail starts a transaction. A MAIL inside an open transaction is refused,
// as Postfix refuses it, and the transaction goes on as it was: go-smtp
// keeps its sender and recipients whatever the session answers.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.inTx {
		return errNestedMail
	}
	if err := ss.s.gate.Sender(from); err != nil {
		return err
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

// errBodyBroken is the reply when the body could not be read to its end:
// the client went quiet past the timeout, or the connection broke. It is
// temporary, and names no address.
var errBodyBroken = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout or error reading the message, try again later"}

func (ss *session) Data(r io.Reader) error {
	if body := ss.conn.Body(); body != nil {
		r = body
	}
	var msg gate.Buffer
	if _, err := msg.ReadFrom(r); err != nil {
		var reply *smtp.SMTPError
		switch {
		case errors.Is(err, smtp.ErrDataTooLarge):
			ss.s.gate.TooLarge(ss.s.smtp.MaxMessageBytes, len(ss.to))
			return err
		case errors.Is(err, smtp.ErrDataReset), errors.As(err, &reply):
			return err
		}
		return errBodyBroken
	}
	return ss.s.gate.Submit(context.Background(), &gate.Transaction{From: ss.from, Opts: ss.opts, To: ss.to, Message: &msg})
}

func (ss *session) Reset() {
	ss.inTx, ss.from, ss.opts, ss.to = false, "", nil, nil
}

func (ss *session) Logout() error { return nil }
