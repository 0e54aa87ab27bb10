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
	tx   *gate.Tx // the open transaction, once MAIL was accepted
	to   int      // recipients given
}

var errNestedMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: nested MAIL command"}

// Mail starts a transaction. A MAIL inside an open transaction is refused,
// as Postfix refuses it, and the transaction goes on as it was: go-smtp
// keeps its sender and recipients whatever the session answers.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.tx != nil {
		return errNestedMail
	}
	tx, err := ss.s.gate.Mail(context.Background(), from, opts)
	if err != nil {
		return err
	}
	ss.tx = tx
	return nil
}

// Rcpt passes a recipient on, and Postfix's answer for it back; its
// parameters never reach here (see paramConn).
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to++
	return ss.tx.Rcpt(to)
}

// errBodyBroken is the reply when the body could not be read to its end:
// the client went quiet past the timeout, or the connection broke. It is
// temporary, and names no address.
var errBodyBroken = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout or error reading the message, try again later"}

// Data streams the message through the gate: a DATA body as paramConn
// reads it, BDAT chunks as go-smtp reads them.
func (ss *session) Data(r io.Reader) error {
	if body := ss.conn.Body(); body != nil {
		r = body
	}
	err := ss.tx.Data(r)
	var rerr *gate.ReadError
	if !errors.As(err, &rerr) {
		return err
	}
	var reply *smtp.SMTPError
	switch {
	case errors.Is(rerr.Err, smtp.ErrDataTooLarge):
		ss.s.gate.TooLarge(ss.s.smtp.MaxMessageBytes, ss.to)
		return smtp.ErrDataTooLarge
	case errors.Is(rerr.Err, smtp.ErrDataReset), errors.As(rerr.Err, &reply):
		return rerr.Err
	}
	return errBodyBroken
}

// Reset ends the transaction; Postfix keeps nothing of one that did not
// get to its end.
func (ss *session) Reset() {
	if ss.tx != nil {
		ss.tx.Abort()
	}
	ss.tx, ss.to = nil, 0
}

func (ss *session) Logout() error {
	ss.Reset()
	return nil
}
